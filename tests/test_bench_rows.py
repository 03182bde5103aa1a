"""What bench/run.py writes beside its figures, so that a reader can judge a row."""


def test_the_box_note_says_how_busy_the_box_was_and_what_the_host_took(monkeypatch):
    """Each latency row of the bench says how busy the whole box was and what share of its time
    the host gave other guests (steal): on this virtual machine the rows moved with it. Busy is
    what was neither idle nor waiting on I/O; /proc/stat's first eight fields, in ticks."""
    from bench import run

    before = run.box_times()
    assert len(before) == 8 and all(ticks >= 0 for ticks in before)
    #            user nice system idle iowait irq softirq steal
    monkeypatch.setattr(run, "box_times", lambda: [600, 0, 100, 150, 50, 0, 0, 100])
    assert run.box_note([0] * 8) == "box 80% busy, 10.0% stolen by the host"
    assert run.box_note(run.box_times()) == "box 0% busy, 0.0% stolen by the host"  # nothing elapsed
