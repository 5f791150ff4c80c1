"""The arena planner never lets two simultaneously live buffers share bytes."""

from hypothesis import given, strategies as st

from engine.memory import ALIGN, Buffer, align, peak_live_bytes, plan_arena


@st.composite
def buffer_sets(draw):
    n = draw(st.integers(1, 40))
    bufs = []
    for i in range(n):
        first = draw(st.integers(-1, 30))
        last = first + draw(st.integers(0, 10))
        bufs.append(Buffer(f"b{i}", draw(st.integers(1, 5000)), first, last))
    return bufs


@given(buffer_sets())
def test_live_buffers_never_overlap(bufs):
    total = plan_arena(bufs)
    for i, a in enumerate(bufs):
        assert a.offset % ALIGN == 0
        assert a.offset + a.size <= total
        for b in bufs[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)
    assert total >= peak_live_bytes(bufs)
    assert total <= sum(align(b.size) for b in bufs)


def test_chain_reuses_memory():
    # A chain a -> b -> c -> d: only two buffers are ever live at once.
    bufs = [Buffer(k, 1024, i, i + 1) for i, k in enumerate("abcd")]
    assert plan_arena(bufs) == 2 * 1024
