"""Personal values (newsletter/links.py): every tag has a value for each recipient, each
encoded for the part it lands in, and the list headers are well-formed."""

from __future__ import annotations

from newsletter.links import list_id, list_unsubscribe, list_unsubscribe_folded, recipient, substitutions
from newsletter.models import ALL_TAGS, TAGS, TEXT_TAGS


def test_every_tag_has_a_value_for_every_recipient() -> None:
    """A tag added to `models` without a value in `links` fails here."""
    assert set(substitutions("tok", "", base_url="https://n.example")) == ALL_TAGS
    assert set(substitutions("tok", "Ann Lee", base_url="https://n.example")) == ALL_TAGS


def test_each_part_gets_the_name_encoded_for_it() -> None:
    values = substitutions("tok", "<b>Ann</b>& Co", base_url="https://n.example")
    assert values[TAGS["greeting"]] == "Hello &lt;b&gt;Ann&lt;/b&gt;&amp;,"
    assert values[TEXT_TAGS["greeting"]] == "Hello <b>Ann</b>&,"
    assert values[TAGS["first_name"]] == "&lt;b&gt;Ann&lt;/b&gt;&amp;"
    # A value never looks like a tag, and a control character never survives.
    odd = substitutions("tok", "%%unsubscribe_url%%\r\nBcc:", base_url="https://n.example")
    assert "%" not in odd[TEXT_TAGS["first_name"]] and "\r" not in odd[TEXT_TAGS["greeting"]]


def test_list_unsubscribe_holds_both_uris_and_folds_between_them() -> None:
    person = recipient(1, "a@b.example", "tok", "", base_url="https://n.example", mailto="u@n.example")
    assert list_unsubscribe(person) == "<https://n.example/unsubscribe/tok>, <mailto:u@n.example?subject=unsubscribe-tok>"
    assert list_unsubscribe_folded(person).split("\r\n") == [
        "<https://n.example/unsubscribe/tok>,", " <mailto:u@n.example?subject=unsubscribe-tok>"
    ]


def test_list_id_label_is_a_dns_label() -> None:
    assert list_id("Pharma Industry Weekly", "news@pharma.example") == "Pharma Industry Weekly <pharma-industry-weekly.pharma.example>"
    assert list_id('The "Daily", Rx', "a@b.example") == '"The \\"Daily\\", Rx" <the-daily-rx.b.example>'
    assert list_id("한국", "a@b.example").endswith("<newsletter.b.example>")
    assert len(list_id("x" * 200, "a@b.example").split("<")[1].split(".")[0]) == 63
