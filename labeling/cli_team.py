"""The command line's team and trust commands: ``user`` (people, roles, team mode), ``auto-accept`` and
``suspects``. Registered on the main parser by :func:`labeling.cli.build_parser`."""
from __future__ import annotations

import sys

from labeling.cli import _fmt_arg, _print
from labeling.views.words import count


def register(sub) -> None:
    """Add the team and trust commands to the command line's sub-parsers."""
    s = sub.add_parser("user", help="manage people: add, list, set-role, disable, enable, unlock (after too many "
                                    "failed sign-ins), mode local|team")
    s.add_argument("dir")
    s.add_argument("action", choices=("add", "list", "set-role", "disable", "enable", "unlock", "mode"))
    s.add_argument("name", nargs="?", help="user name (for mode: local or team)")
    s.add_argument("role", nargs="?", default=None, choices=("annotator", "reviewer", "admin"))
    s.add_argument("--role", dest="role_option", choices=("annotator", "reviewer", "admin"),
                   help="the role (add, set-role): the same as giving it after the name")
    s.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    _fmt_arg(s)
    s.set_defaults(func=cmd_user)

    s = sub.add_parser("auto-accept", help="accept the confident pseudo-labels the Model page would accept, as one "
                                           "undoable batch (--dry-run: list them with thresholds and bounds)")
    s.add_argument("dir")
    s.add_argument("--target", type=float, default=0.95, help="target precision in (0, 1) (default 0.95)")
    s.add_argument("--dry-run", action="store_true", help="list the candidates, write nothing")
    s.add_argument("--user", default="auto-accept", help="the name stored with the accepted labels")
    s.add_argument("--min-held-out", type=int, default=5,
                   help="fewest held-out labels predicted as a class for it to get a threshold (default 5)")
    _fmt_arg(s)
    s.set_defaults(func=cmd_auto_accept)

    s = sub.add_parser("certify", help="auto-accept a larger batch by checking a random sample of it: --start draws "
                                       "the sample, label its items (label, or the Model page), then --accept")
    s.add_argument("dir")
    s.add_argument("--target", type=float, default=0.97, help="target precision in (0, 1) (default 0.97)")
    what = s.add_mutually_exclusive_group()
    what.add_argument("--start", action="store_true", help="fix the batch and draw the items to check")
    what.add_argument("--accept", action="store_true", help="accept the rest of a certified batch as one batch")
    what.add_argument("--cancel", action="store_true", help="close the open check: its round gets no other sample "
                                                             "(the checks stay as labels)")
    s.add_argument("--user", default="certify", help="the name stored with the accepted labels")
    _fmt_arg(s)
    s.set_defaults(func=cmd_certify)

    s = sub.add_parser("suspects", help="human labels that the model and the neighbours contradict, most likely first")
    s.add_argument("dir")
    s.add_argument("--limit", type=int, help="at most this many (default: all)")
    _fmt_arg(s)
    s.set_defaults(func=cmd_suspects)


def cmd_user(a) -> int:
    from labeling.team import auth
    from labeling.project import Project
    project = Project(a.dir)
    if a.role and a.role_option and a.role != a.role_option:
        raise ValueError(f"two roles given: {a.role} and --role {a.role_option}")
    a.role = a.role_option or a.role or ("annotator" if a.action == "add" else None)
    if a.action == "set-role" and a.role is None:
        raise ValueError("usage: user DIR set-role NAME ROLE (or --role ROLE)")
    if a.action == "add":
        _user_add(a, project)
    elif a.action == "list":
        users = auth.list_users(project)
        _print(users, a.format, "\n".join(
            f"{u['name']:<20} {u['role']:<10} {'disabled' if u['disabled'] else ''}"
            f"{' locked' if u.get('locked') else ''}".rstrip() for u in users) or "no users")
    elif a.action == "set-role":
        auth.set_role(project, a.name, a.role, by=None)
        _print({"name": a.name, "role": a.role}, a.format, f"{a.name} is now a {a.role}")
    elif a.action in ("disable", "enable"):
        auth.set_disabled(project, a.name, a.action == "disable", by=None)
        _print({"name": a.name, "disabled": a.action == "disable"}, a.format, f"{a.name}: {a.action}d")
    elif a.action == "unlock":
        if not a.name:
            raise ValueError("usage: user DIR unlock NAME")
        cleared = auth.unlock(project, a.name, by=None)
        _print({"name": a.name, "unlocked": cleared}, a.format,
               f"{a.name}: unlocked" if cleared else f"{a.name} had no failed sign-ins")
    elif a.action == "mode":
        _user_mode(a, project)
    return 0


def _user_add(a, project) -> None:
    import getpass

    from labeling.team import auth
    password = sys.stdin.readline().rstrip("\n") if a.password_stdin else getpass.getpass(f"Password for {a.name}: ")
    auth.add_user(project, a.name, password, role=a.role, by=None)
    _print({"added": a.name, "role": a.role}, a.format, f"added {a.name} ({a.role})")


def _user_mode(a, project) -> None:
    from labeling.team import auth
    if a.name not in ("local", "team"):
        raise ValueError("usage: user DIR mode local|team")
    admins = [u for u in auth.list_users(project) if u["role"] == "admin" and not u["disabled"]]
    if a.name == "team" and not admins:
        raise ValueError("team mode needs an admin first: python -m labeling user DIR add NAME --role admin")
    project.set_setting("auth_mode", a.name)
    _print({"mode": a.name}, a.format, f"project mode: {a.name}")


def cmd_auto_accept(a) -> int:
    from labeling.service import LabelingService
    from labeling.views.model_report import accept_batch, auto_accept_plan
    if not 0.0 < a.target < 1.0:
        raise ValueError(f"--target must lie in (0, 1); got {a.target}")
    service = LabelingService(a.dir)
    plan = auto_accept_plan(service, target_precision=a.target, min_support=a.min_held_out)
    if plan is None:
        raise LookupError("no round with cross-validated human labels yet: label some items and run train")
    out = plan.to_dict()
    accepted = None
    if not a.dry_run:
        if not plan.candidates:
            raise ValueError(f"nothing to accept at target {a.target}: no unlabeled item clears its class threshold")
        accepted = accept_batch(service, plan.candidates, user=a.user, model_round=plan.round_id)
        out.update(batch_id=accepted.batch_id, accepted=accepted.item_ids, skipped=accepted.skipped)
    out["dry_run"] = bool(a.dry_run)
    text = plan.to_text()
    if accepted is not None:
        text += (f"\naccepted {count(len(accepted.item_ids), 'item')} as batch {accepted.batch_id} "
                 f"(undo: python -m labeling undo DIR --user NAME --batch {accepted.batch_id})")
    _print(out, a.format, text)
    return 0


def cmd_certify(a) -> int:
    from labeling.service import LabelingService
    from labeling.views import certification as cert_v

    service = LabelingService(a.dir)
    if a.cancel:
        cert_v.cancel(service)
        _print({"state": "cancelled", "round_id": None, "target": None, "batch": 0, "checks": 0}, a.format,
               "the open check is closed (its round gets no other sample); the checks made stay as labels")
        return 0
    if a.accept:
        cert = cert_v.current(service)
        done = cert_v.accept(service, user=a.user)
        _print({**_cert_head(cert, "accepted"), "batch_id": done.batch_id, "accepted": done.item_ids,
                "skipped": done.skipped}, a.format,
               f"accepted {count(len(done.item_ids), 'item')} as batch {done.batch_id} "
               f"(undo: python -m labeling undo DIR --user {a.user} --batch {done.batch_id})")
        return 0
    cert = cert_v.current(service)
    if a.start or cert is None or cert.state in ("accepted", "closed"):
        prop = cert_v.propose(service, target=a.target)
        if prop is None:
            raise LookupError("no round with cross-validated human labels yet: label some items and run train")
        if not a.start:
            _print({"state": "proposed" if prop.batch else "none", "round_id": prop.round_id, "target": prop.target,
                    "batch": len(prop.batch), "checks": prop.audit, "accepted_if_flawless": prop.accepted_if_flawless,
                    "bound_if_flawless": prop.bound, "chance": prop.chance, "proposals": prop.proposals}, a.format,
                   f"round {prop.round_id}: check {prop.audit} of {len(prop.batch)} proposals to certify "
                   f"{prop.accepted_if_flawless} at {prop.target:.0%} (python -m labeling certify DIR --start)"
                   if prop.batch else f"round {prop.round_id}: no batch worth checking at {prop.target:.0%}")
            return 0
        cert = cert_v.start(service, prop, user=a.user)
    _print_status(service, cert, a.format)
    return 0


def _cert_head(cert, state: str) -> dict:
    return {"state": state, "round_id": cert.round_id, "target": cert.target, "batch": len(cert.batch),
            "checks": len(cert.sample)}


def _print_status(service, cert, fmt: str) -> None:
    import csv
    import io

    from labeling.views.model_report import candidate_cards

    todo = set(cert.todo)
    cards = candidate_cards(service, [c for c in cert.batch if c.item_id in todo], service.class_names())
    out = {**_cert_head(cert, cert.state), "id": cert.id, "right": len(cert.right), "wrong": len(cert.wrong),
           "bound": cert.bound, "todo": [{"item_id": c["item_id"], "proposed": c["class"], "image": c["image"]}
                                         for c in cards]}
    text = (f"{cert.state}: {len(cert.right)} right, {len(cert.wrong)} wrong of {len(cert.sample)} checks "
            f"(batch of {len(cert.batch)}, target {cert.target:.0%})")
    if cards:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([c["item_id"], c["class"], c["image"]] for c in cards)
        text += ("\nto check: save the lines below as checks.csv, correct the label of any wrong item, then run "
                 "python -m labeling label DIR --csv checks.csv --user NAME\nitem_id,label,image\n"
                 + buf.getvalue().rstrip("\n"))
    elif cert.state == "certified":
        text += f"\ncertified at {cert.bound:.1%}: python -m labeling certify DIR --accept"
    _print(out, fmt, text)


def cmd_suspects(a) -> int:
    from labeling.service import LabelingService
    from labeling.team.review import SUSPECT_KEYS, format_suspects, suspected_errors
    rows = suspected_errors(LabelingService(a.dir), limit=a.limit)
    _print([{k: r.get(k) for k in SUSPECT_KEYS} for r in rows], a.format, format_suspects(rows))
    return 0
