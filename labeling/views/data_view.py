"""The Data page's facade (``Session.data``): classes, import, upload, embed, label import, export and
statistics, each checked against the acting session's role."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labeling.session import Session


class DataView:
    """The Data page (``Session.data``): classes, import, embed, label import, export and statistics.

    Who may do what (checked here, for every entry point that goes through a session): anyone signed in
    adds a class while labeling; renaming and merging classes (which change everyone's votes) and
    exporting need a reviewer; importing images or labels and embedding need an admin.
    """

    def __init__(self, session: "Session") -> None:
        self.session = session
        self.service = session.service

    @staticmethod
    def _views():
        from labeling.views import data_admin

        return data_admin

    def backbones(self):
        from labeling.embed.backbones import list_backbones

        return list_backbones()

    def current_backbone(self) -> str | None:
        return self.service.project.setting("backbone")

    def root(self) -> str:
        return str(self.service.project.root)

    def stats(self) -> dict:
        return self._views().project_stats(self.service)

    def unreadable_files(self):
        return self._views().unreadable_files(self.service)

    def class_table(self):
        return self._views().class_table(self.service)

    def add_class(self, name: str) -> int:
        return self._views().add_class(self.service, name, user=self.session.who.name)

    def add_classes(self, text: str) -> dict:
        """Several classes at once, typed with commas or on lines, in that order (their keys follow it):
        ``{"created": [...], "existing": [...]}``."""
        from labeling.data.importer import declare_classes, parse_class_list

        names = parse_class_list(text)
        if not names:
            raise ValueError("type one or more class names, separated by commas")
        return declare_classes(self.service.project, names, user=self.session.who.name)

    def rename_class(self, old: str, new: str) -> None:
        who = self.session.require("reviewer", "rename a class")
        self._views().rename_class(self.service, old, new, user=who.name)

    def merge_classes(self, source: str, target: str) -> dict:
        who = self.session.require("reviewer", "merge classes")
        return self._views().merge_classes(self.service, source, target, user=who.name)

    def undo_merge(self, source: str) -> list[int]:
        who = self.session.require("reviewer", "undo a merge")
        return self._views().undo_merge(self.service, source, user=who.name)

    def run_import(self, src, *, labels_from_folders: bool = False, manifest=None, progress=None) -> dict:
        who = self.session.require("admin", "import images")
        return self._views().run_import(self.service, src, labels_from_folders=labels_from_folders, manifest=manifest,
                                        user=who.name, progress=progress)

    def run_upload(self, files, *, progress=None) -> dict:
        """Images uploaded from the browser (``(name, bytes)``; zip archives unpacked) saved into the
        project's ``uploads/`` folder and imported there, with the import's checks (admins)."""
        from labeling.data.upload import save_uploads

        who = self.session.require("admin", "upload images")
        folder, left_out = save_uploads(self.service.project, files)
        result = self._views().run_import(self.service, folder, user=who.name, progress=progress)
        result["problems"] = [*left_out, *result["problems"]]
        result["folder"] = folder.relative_to(self.service.project.root).as_posix()
        return result

    def run_embed(self, *, backbone: str | None = None, device: str = "auto", progress=None) -> dict:
        self.session.require("admin", "embed the images")
        return self._views().run_embed(self.service, backbone=backbone, device=device, progress=progress)

    def run_label_import(self, path) -> dict:
        who = self.session.require("admin", "import labels")
        return self._views().run_label_import(self.service, path, user=who.name)

    def run_prediction_import(self, file_name: str, data: bytes, *, model: str | None = None) -> dict:
        """A model's predictions, uploaded from the browser, as suggestions for the next rounds; admins."""
        from labeling.data.predictions import import_predictions, save_upload

        who = self.session.require("admin", "import predictions")
        path = save_upload(self.service.project, file_name, data)
        return import_predictions(self.service.project, path, name=model or None, user=who.name)

    def compare_backbones(self, *, sample: int = 300, device: str = "auto") -> dict:
        """Every backbone available here on a sample of the project (:mod:`labeling.embed.compare`); admins."""
        from labeling.embed.compare import compare_backbones

        self.session.require("admin", "compare backbones")
        return compare_backbones(self.service.project, sample=sample, device=device)

    def prompts(self) -> list[dict]:
        """Each class's zero-shot prompt (CLIP backbones) and whether a person set it."""
        from labeling.model.zero_shot import prompt_for, read_prompts

        set_ = read_prompts(self.service.project)
        return [{"class": n, "prompt": prompt_for(n, set_), "custom": n in set_}
                for n in self.service.class_names().values()]

    def set_prompt(self, class_name: str, prompt: str) -> None:
        """Set (empty: reset) a class's zero-shot prompt; reviewers (it changes everyone's suggestions)."""
        from labeling.model.zero_shot import set_prompt

        self.session.require("reviewer", "change a zero-shot prompt")
        set_prompt(self.service.project, class_name, prompt)

    def run_export(self, fmt: str, name: str, *, labeled_only: bool = False, link: bool = False,
                   overwrite: bool = False) -> dict:
        """Export to ``exports/<name>`` inside the project (a plain name, never a server path)."""
        self.session.require("reviewer", "export the labels")
        return self._views().run_export(self.service, fmt, name, labeled_only=labeled_only, link=link,
                                        overwrite=overwrite)

    def export_payload(self, result: dict):
        return self._views().export_payload(result)
