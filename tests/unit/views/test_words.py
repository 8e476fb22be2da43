from labeling.views.words import count


def test_count_uses_the_singular_for_one_and_the_plural_otherwise():
    assert count(1, "item") == "1 item"
    assert count(0, "item") == "0 items"
    assert count(2, "file") == "2 files"
    assert count(3, "class") == "3 classes"
    assert count(1, "class") == "1 class"
    assert count(2, "batch") == "2 batches"
    assert count(12345, "label") == "12,345 labels"
    assert count(2, "box", "boxen") == "2 boxen"


def test_a_tie_is_called_a_tie_and_a_majority_says_its_count():
    from labeling.views.words import vote_standing

    assert vote_standing({"horse": 1, "zebra": 1}, "horse") == "Tied: horse 1 · zebra 1; horse counts until a reviewer settles it."
    assert vote_standing({"horse": 2, "zebra": 1}, "horse") == "Majority: horse (2 of 3 votes)."
    assert vote_standing({}, None) == "No votes yet."
