"""Data: project statistics, import and embed, classes (add, rename, merge), export."""
from __future__ import annotations

import plotly.express as px
import streamlit as st

from labeling.session import DASH, DEFAULT_EXPORT_NAMES, FORMATS, count
from app_pages import team_admin
from app_pages.common import get_session, get_worker

ENGINE_ERRORS = (ValueError, LookupError, OSError)
# What the engine raises for a request it cannot carry out; anything else is a bug and surfaces.

session = get_session()
data = session.data
st.title("Data")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _show_import_result(result: dict) -> None:
    st.success(f"Imported {count(result['added'], 'new image')}; {count(result['already_present'], 'image')} "
               f"already in the project; {count(result['labels'], 'initial label')}.")
    if result.get("folder"):
        st.caption(f"Saved into `{result['folder']}` inside the project.")
    if result.get("embedded") is not None:
        st.caption(f"Embedded with {result['embedded'].get('backbone')} on {result['embedded'].get('device')}.")
    if result["skipped"]:
        st.warning(f"{count(len(result['skipped']), 'file')} skipped:")
        st.dataframe(result["skipped"], hide_index=True, key="data_import_skipped",
                     column_config={"path": "file", "reason": "reason"}, placeholder=DASH)
    if result["duplicates"]:
        st.info(f"{count(len(result['duplicates']), 'duplicate')} of images already in the project:")
        st.dataframe(result["duplicates"], hide_index=True, key="data_import_duplicates", placeholder=DASH)
    for problem in result["problems"]:
        st.text(problem)


def _run_import(run, embed_after: bool) -> None:
    """Run an import (a folder, a manifest or an upload) with a progress bar, then embed what it added."""
    import_bar = st.progress(0.0, text="Importing…")
    try:
        result = run(lambda done, total: import_bar.progress(done / max(total, 1), text=f"Imported {done} of {total}"))
        import_bar.progress(1.0, text="Import done")
        result["embedded"] = None
        if embed_after and result["added"]:
            embed_bar = st.progress(0.0, text="Embedding…")
            result["embedded"] = get_session().data.run_embed(
                progress=lambda done, total: embed_bar.progress(done / max(total, 1), text=f"Embedded {done} of {total}"))
            embed_bar.progress(1.0, text="Embedding done")
    except ENGINE_ERRORS as exc:
        st.session_state.pop("data_import_result", None)
        st.error(f"Import failed: {exc}")
    else:
        st.session_state["data_import_result"] = result


def _add_class() -> None:
    """Button callback: runs before the page, so the name field can be emptied after a success. Several
    names separated by commas declare several classes, in that order (their keys on the Label page)."""
    name = st.session_state.get("data_new_class", "")
    try:
        if "," in name or "\n" in name:
            got = get_session().data.add_classes(name)
            message = f"Added {count(len(got['created']), 'class')}" + (
                f"; {', '.join(got['existing'])} already there." if got["existing"] else ".")
        else:
            get_session().data.add_class(name)
            message = f"Added class {name.strip()!r}."
    except ENGINE_ERRORS as exc:
        st.session_state["data_add_error"] = str(exc)
    else:
        st.session_state["data_class_message"] = message
        st.session_state["data_new_class"] = ""


def _default_export_path() -> None:
    """Radio callback: suggest a path that fits the chosen format."""
    st.session_state["data_export_path"] = DEFAULT_EXPORT_NAMES[st.session_state["data_export_format"]]


tab_stats, tab_import, tab_classes, tab_export, tab_team = st.tabs(
    ["Statistics", "Import", "Classes", "Export", "Team"])

with tab_stats:
    stats = data.stats()
    items = stats["items"]
    cols = st.columns(5)
    cols[0].metric("Images", items["ok"], help="readable, unique images")
    cols[1].metric("Labeled", stats["labeled"])
    cols[2].metric("Skipped / unsure", stats["skipped"])
    cols[3].metric("Unreadable", items["unreadable"])
    cols[4].metric("Duplicates", items["duplicate"])
    cols = st.columns(4)
    cols[0].metric("Rounds", stats["rounds"]["total"])
    cols[1].metric("Backbone", stats["backbone"] or "not embedded")
    cols[2].metric("Vector size", stats["vector_dim"] or "—")
    cols[3].metric("Disk (.quorum + db)", _mib(stats["disk_bytes"] + stats["database_bytes"]))
    per_class = stats["per_class"]
    if len(per_class):
        fig = px.bar(per_class, x="class", y="labels", title="Labels per class")
        fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10})
        st.plotly_chart(fig, key="data_class_chart")
    else:
        st.caption("No classes yet.")
    left, right = st.columns(2)
    with left:
        st.subheader("Labels per annotator")
        st.dataframe(stats["by_annotator"], hide_index=True, key="data_by_annotator", placeholder=DASH)
    with right:
        st.subheader("Labels per source")
        st.dataframe(stats["by_source"], hide_index=True, key="data_by_source", placeholder=DASH)
    st.subheader("Unreadable and duplicate files")
    bad = data.unreadable_files()
    if len(bad):
        st.dataframe(bad, hide_index=True, key="data_unreadable", placeholder=DASH)
    else:
        st.caption("Every recorded file is a usable image.")

with tab_import:
    st.caption(f"Images must live inside the project folder `{data.root()}`. Give a folder relative "
               "to it (or an absolute path inside it) and/or a CSV/Parquet manifest of `path[,label]`.")
    path = st.text_input("Folder", key="data_import_path", placeholder="images/new")
    from_folders = st.checkbox("Initial labels from sub-folder names", key="data_labels_from_folders")
    manifest = st.text_input("Manifest (optional)", key="data_manifest_path", placeholder="manifest.csv")
    embed_after = st.checkbox("Embed the new images afterwards", value=True, key="data_embed_after")
    if st.button("Import", key="data_import_button", type="primary"):
        _run_import(lambda bar: data.run_import(path, labels_from_folders=from_folders, manifest=manifest,
                                                progress=bar), embed_after)

    st.subheader("Upload images")
    uploads = st.file_uploader("Images, or zip archives of them", accept_multiple_files=True, key="data_upload",
                               type=["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff", "zip"],
                               help="Saved into the project's uploads/ folder and imported there, with the same "
                                    "checks as a folder (at most 200 MiB at once)")
    if st.button("Import uploaded files", key="data_upload_button", disabled=not uploads):
        files = [(f.name, f.getvalue()) for f in uploads]
        _run_import(lambda bar: data.run_upload(files, progress=bar), embed_after)
    if "data_import_result" in st.session_state:
        _show_import_result(st.session_state["data_import_result"])

    st.subheader("Embeddings")
    specs = data.backbones()
    current = data.current_backbone() or specs[0].name
    names = [sp.name for sp in specs]
    e = st.columns([2, 1, 1])
    chosen_backbone = e[0].selectbox("Backbone", names, index=names.index(current) if current in names else 0,
                                     key="data_backbone", format_func=lambda n: next(
                                         f"{sp.name} · {sp.dim}-d · {sp.description}" for sp in specs if sp.name == n))
    device = e[1].selectbox("Device", ["auto", "cpu", "cuda"], key="data_device",
                            help="auto: the GPU when torch sees one, else the CPU")
    if chosen_backbone != current:
        st.caption(f"Switching from {current} embeds every image again with {chosen_backbone}; the vectors of "
                   f"{current} stay on disk, so switching back is instant.")
    if e[2].button("Embed", key="data_embed_button"):
        bar = st.progress(0.0, text="Embedding…")
        try:
            got = data.run_embed(backbone=chosen_backbone, device=device,
                                       progress=lambda done, total: bar.progress(done / max(total, 1),
                                                                                 text=f"Embedded {done} of {total}"))
        except ENGINE_ERRORS as exc:
            st.error(f"Embedding failed: {exc}")
        else:
            bar.progress(1.0, text="Embedding done")
            st.success(f"Embedded with {got['backbone']} on {got['device']}")
    with st.expander("Compare backbones on this project"):
        st.caption("Embeds a sample of 300 images with every backbone whose weights are on this machine: effective "
                   "rank (how many directions the features use), agreement of each one's nearest neighbours with "
                   "the others', and, with labels, the learner's cross-validated accuracy on them. Minutes on a CPU.")
        if st.button("Compare", key="data_compare_button"):
            with st.spinner("Embedding a sample with each backbone…"):
                try:
                    st.session_state["data_compare"] = data.compare_backbones(sample=300, device=device)
                except ENGINE_ERRORS as exc:
                    st.error(f"Comparison failed: {exc}")
        compared = st.session_state.get("data_compare")
        if compared:
            st.caption(f"{compared['sample']} images, {compared['labeled']} with a human label.")
            st.dataframe(compared["backbones"], key="data_compare_table", hide_index=True, placeholder=DASH,
                         column_config={"cv_accuracy": st.column_config.NumberColumn("CV accuracy", format="percent"),
                                        "knn_agreement": st.column_config.NumberColumn("kNN agreement"),
                                        "effective_rank": st.column_config.NumberColumn("effective rank")})

    st.subheader("Import labels")
    st.caption("CSV, JSONL or Parquet with `label` and `uri`/`file_name`/`item_id`, a COCO-style classification "
               "JSON, a Hugging Face imagefolder's `metadata.jsonl`, an ImageFolder tree (a folder per "
               "class), a Label Studio export (JSON, JSON_MIN, CSV), CVAT XML, or a FiftyOne dataset folder or "
               "CSV, inside the project folder; the format is told by the content. Rows match "
               "by path, by file content, or by a file name found once; labels keep the source `import`.")
    label_file = st.text_input("Label file", key="data_label_file", placeholder="exports/labels.coco.json")
    if st.button("Import labels", key="data_label_import_button"):
        try:
            got = data.run_label_import(label_file)
        except ENGINE_ERRORS as exc:
            st.error(f"Label import failed: {exc}")
        else:
            st.success(f"Imported {count(got['labeled'], 'label')} from {count(got['rows'], 'row')}")
            for problem in got["problems"][:20]:
                st.text(problem)

    st.subheader("Import predictions")
    st.caption("Your own model's output as suggestions, never as labels: CSV, JSONL or Parquet with the image "
               "(`file_name`, `filepath` or `uri`) and either `label` + `score` or one `prob_<class>` column per "
               "class, or Label Studio predictions. The model joins the next rounds as an ensemble member "
               "(weigh it or turn it off on the Model page), and where it disagrees with the heads the queue "
               "asks first.")
    pred_file = st.file_uploader("Predictions file", type=["csv", "tsv", "jsonl", "parquet", "json"],
                                 key="data_pred_upload")
    pred_name = st.text_input("Model name", key="data_pred_name", placeholder="from the file (optional)",
                              max_chars=64)
    if st.button("Import predictions", key="data_pred_button", disabled=pred_file is None):
        try:
            got = data.run_prediction_import(pred_file.name, pred_file.getvalue(), model=pred_name.strip())
        except ENGINE_ERRORS as exc:
            st.error(f"Prediction import failed: {exc}")
        else:
            worker = get_worker()
            if worker is not None:
                worker.trigger()
            new = f"; new classes: {', '.join(got['new_classes'])}" if got["new_classes"] else ""
            st.success(f"Imported the predictions of “{got['model']}” for {count(got['items'], 'image')}{new}. "
                       "The next round uses them.")
            for problem in got["problems"][:20]:
                st.text(problem)

with tab_classes:
    table = data.class_table()
    st.dataframe(table, hide_index=True, key="data_class_table", placeholder=DASH)
    active = table.loc[table["merged_into"].isna(), "class"].tolist()
    merged = table.loc[table["merged_into"].notna(), "class"].tolist()

    st.subheader("Add")
    st.text_input("New class", key="data_new_class", placeholder="A name, or several separated by commas",
                  help="Classes keep their key on the Label page in the order they are added.")
    st.button("Add class", key="data_add_class", on_click=_add_class)
    if "data_add_error" in st.session_state:
        st.error(st.session_state.pop("data_add_error"))

    st.subheader("Rename")
    rename_from = st.selectbox("Class", active, key="data_rename_from", index=None, placeholder="Choose a class")
    rename_to = st.text_input("New name", key="data_rename_to")
    if st.button("Rename", key="data_rename_button", disabled=not active):
        try:
            data.rename_class(rename_from or "", rename_to)
        except ENGINE_ERRORS as exc:
            st.error(str(exc))
        else:
            st.session_state["data_class_message"] = f"Renamed {rename_from!r} to {rename_to.strip()!r}."
            st.rerun()

    if data.current_backbone() and data.current_backbone().startswith("clip_"):
        st.subheader("Zero-shot prompts")
        st.caption("With a CLIP backbone, each class's suggestions start from how well an image matches its "
                   "prompt. Empty: the default, “a photo of a {name}”.")
        prompts = data.prompts()
        st.dataframe(prompts, key="data_prompts_table", hide_index=True, placeholder=DASH)
        pc = st.columns([1, 2])
        prompt_class = pc[0].selectbox("Class", [p["class"] for p in prompts], key="data_prompt_class", index=None,
                                       placeholder="Choose")
        prompt_text = pc[1].text_input("Prompt", key="data_prompt_text", max_chars=300)
        if st.button("Save prompt", key="data_prompt_button", disabled=prompt_class is None):
            try:
                data.set_prompt(prompt_class, prompt_text)
            except ENGINE_ERRORS as exc:
                st.error(str(exc))
            else:
                worker = get_worker()
                if worker is not None:
                    worker.trigger()  # the next round uses it
                st.success(f"Prompt of {prompt_class!r} saved; the next round uses it.")

    st.subheader("Merge")
    st.caption("Every item labeled with the first class is relabeled with the second as one batch; the history "
               "stays, and the first class can be un-merged later.")
    merge_cols = st.columns(2)
    merge_from = merge_cols[0].selectbox("Merge", active, key="data_merge_from", index=None, placeholder="Choose")
    merge_into = merge_cols[1].selectbox("into", active, key="data_merge_into", index=None, placeholder="Choose")
    if st.button("Merge", key="data_merge_button", disabled=len(active) < 2):
        try:
            done = data.merge_classes(merge_from or "", merge_into or "")
        except ENGINE_ERRORS as exc:
            st.error(str(exc))
        else:
            st.session_state["data_class_message"] = (
                f"Merged {done['source']!r} into {done['target']!r}: {done['moved']} items relabeled.")
            st.rerun()
    if merged:
        unmerge = st.selectbox("Un-merge", merged, key="data_unmerge_from", index=None, placeholder="Choose")
        if st.button("Un-merge", key="data_unmerge_button"):
            try:
                restored = data.undo_merge(unmerge or "")
            except ENGINE_ERRORS as exc:
                st.error(str(exc))
            else:
                st.session_state["data_class_message"] = f"Un-merged {unmerge!r}: {len(restored)} labels restored."
                st.rerun()
    if "data_class_message" in st.session_state:
        st.toast(st.session_state.pop("data_class_message"))

with tab_export:
    st.session_state.setdefault("data_export_path", DEFAULT_EXPORT_NAMES[FORMATS[0]])
    fmt = st.radio("Format", FORMATS, horizontal=True, key="data_export_format", on_change=_default_export_path)
    out = st.text_input("Export name", key="data_export_path",
                        help="A plain file or folder name. Exports are written to the exports/ folder inside "
                             "the project, and offered as a download.")
    labeled_only = st.checkbox("Labeled items only", key="data_export_labeled_only",
                               help="ImageFolder, COCO, Hugging Face and FiftyOne exports always hold labeled items only.")
    link = st.checkbox("Link the images instead of copying them", key="data_export_link",
                       disabled=fmt not in ("imagefolder", "hf", "fiftyone"))
    overwrite = st.checkbox("Replace an earlier export of that name", key="data_export_overwrite")
    if st.button("Export", key="data_export_button", type="primary"):
        try:
            st.session_state["data_export_result"] = data.run_export(fmt, out, labeled_only=labeled_only,
                                                                     link=link, overwrite=overwrite)
        except ENGINE_ERRORS as exc:
            st.session_state.pop("data_export_result", None)
            st.error(f"Export failed: {exc}")
    result = st.session_state.get("data_export_result")
    if result is not None:
        st.success(f"Wrote {result['rows']} rows as {result['format']} to {result['name']}")
        payload, name, mime = data.export_payload(result)
        st.download_button("Download", data=payload, file_name=name, mime=mime, key="data_export_download")

with tab_team:
    team_admin.render(get_session())
