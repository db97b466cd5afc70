"""The journal's record format on its own: what a replay makes of whole, cut and damaged bytes."""

import struct

from hypothesis import given
from hypothesis import strategies as st

from analytics_core import journal

payloads = st.lists(st.binary(max_size=300), min_size=1, max_size=20)


def stream(messages):
    return b"".join(
        journal.encode(journal.APPEND, number + 1, data) for number, data in enumerate(messages)
    )


@given(payloads, st.data())
def test_a_stream_cut_anywhere_replays_exactly_its_whole_records(messages, data):
    whole = stream(messages)
    cut = data.draw(st.integers(0, len(whole)), label="cut")
    replayed = [(row_id, payload) for _, row_id, payload, _ in journal.records(whole[:cut])]
    ends = []
    position = 0
    for data_bytes in messages:
        position += journal.HEADER_SIZE + len(data_bytes)
        ends.append(position)
    complete = sum(1 for end in ends if end <= cut)
    assert replayed == [(number + 1, messages[number]) for number in range(complete)]


@given(payloads, st.data())
def test_a_damaged_byte_ends_the_replay_at_or_before_its_record(messages, data):
    whole = bytearray(stream(messages))
    position = data.draw(st.integers(0, len(whole) - 1), label="position")
    whole[position] ^= data.draw(st.integers(1, 255), label="flip")
    replayed = list(journal.records(bytes(whole)))
    # Every record replayed is one that was written, whole, and all of them end before the damage.
    for kind, row_id, payload, offset in replayed:
        assert kind == journal.APPEND
        assert payload == messages[row_id - 1]
        assert offset + journal.HEADER_SIZE + len(payload) <= position


def test_gone_records_take_rows_out_of_a_replay_across_segments(tmp_path):
    first, second = tmp_path / "1-00000000000000aa.1.log", tmp_path / "1-00000000000000aa.2.log"
    first.write_bytes(stream([b"one", b"two", b"three"]) + journal.gone_record([1]))
    second.write_bytes(journal.encode(journal.APPEND, 4, b"four") + journal.gone_record([3, 99]))
    assert journal.owner_segments(str(tmp_path)) == {
        "1-00000000000000aa": [str(first), str(second)]
    }
    assert journal.replay([str(first), str(second)]) == {2: b"two", 4: b"four"}


def test_a_gone_record_names_its_ids_as_signed_64_bit_integers():
    record = journal.gone_record([1, 2**40])
    [(kind, row_id, payload, offset)] = journal.records(record)
    assert (kind, row_id, offset) == (journal.GONE, 0, 0)
    assert struct.unpack("<2q", payload) == (1, 2**40)
