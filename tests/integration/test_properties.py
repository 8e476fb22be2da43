"""Property tests: derived labels always equal a sequential replay of the event log."""
from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import items as items_q
from storage import labels as labels_q
from storage.db import Database

N_ITEMS = 6
CLASSES = ("a", "b", "c")

USERS = ("u", "v", "w")
action = st.one_of(
    st.tuples(st.just("label"), st.lists(st.integers(0, N_ITEMS - 1), min_size=1, max_size=4, unique=True),
              st.sampled_from((*CLASSES, None)), st.sampled_from(USERS), st.booleans()),
    st.tuples(st.just("undo"), st.integers(0, 50)),
)


def _replay(log: list[tuple], undone: set[int]) -> dict[int, str | None]:
    """The model: among batches not undone, each person's newest event on an item is their vote; the
    newest adjudication decides, else the majority of label votes (a tie: the class voted last); an
    item with only skip votes is skipped (None)."""
    votes: dict[tuple[int, str], tuple[int, str | None]] = {}
    adjudicated: dict[int, str | None] = {}
    for k, (_, items, cls, user, adjudication) in enumerate(log):
        if k in undone:
            continue
        for i in items:
            if adjudication:
                adjudicated[i] = cls
            else:
                votes[(i, user)] = (k, cls)
    state: dict[int, str | None] = {}
    for (i, _), (k, cls) in sorted(votes.items(), key=lambda kv: kv[1][0]):
        state.setdefault(i, None)
    for i in state:
        tally: dict[str, list[int]] = {}
        for (j, _), (k, cls) in votes.items():
            if j == i and cls is not None:
                tally.setdefault(cls, []).append(k)
        if tally:
            state[i] = max(tally, key=lambda c: (len(tally[c]), max(tally[c])))
    state.update(adjudicated)
    return state


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(action, min_size=1, max_size=15))
def test_any_sequence_of_labels_bulk_actions_and_undos_replays_exactly(tmp_path_factory, actions):
    db = Database(tmp_path_factory.mktemp("prop") / "q.duckdb")
    with db.session() as con:
        ids = items_q.insert_items(con, [items_q.NewItem(f"{i}.png", f"h{i}", 1, 1, "ok") for i in range(N_ITEMS)])
        cls = labels_q.ensure_classes(con, list(CLASSES), user="u")
    log: list[tuple[str, list[int], str | None]] = []
    batch_ids: list[str] = []
    undone: set[int] = set()
    for act in actions:
        if act[0] == "label":
            _, items, name, user, adjudication = act
            batch = str(uuid.uuid4())
            kind = "label" if name else "skip"
            with db.session() as con:
                labels_q.append_events(con, [labels_q.Event(ids[i], cls[name] if name else None, kind) for i in items],
                                       user=user, source="adjudication" if adjudication else "manual",
                                       batch_id=batch, model_round=None)
            log.append(("label", items, name, user, adjudication))
            batch_ids.append(batch)
        else:
            live = [k for k in range(len(log)) if k not in undone]
            if not live:
                continue
            target = live[act[1] % len(live)]  # undo any live batch, not only the newest
            with db.session() as con:
                labels_q.undo_batch(con, batch_ids[target], user="u", undo_batch_id=str(uuid.uuid4()))
            undone.add(target)
    expected = _replay(log, undone)
    with db.session() as con:
        state = {int(r[0]): r for r in labels_q.current_state(con)}
        names = dict(labels_q.classes(con))
        # the neighbourhood view's query over a few items' events gives the same rows as the view
        some = ids[::2] + [10**9]
        assert labels_q.current_state(con, some) == [state[i] for i in sorted(some) if i in state]
        assert labels_q.count_labeled(con) == sum(r[2] == "label" for r in state.values())
        everyone = labels_q.voters(con)
        assert labels_q.voters(con, some) == {i: who for i, who in everyone.items() if i in some}
    got = {ids.index(i): (names[r[1]] if r[2] == "label" else None) for i, r in state.items()}
    assert got == expected
