from raydist.progress import Progress, _duration


def test_progress_line_counts_rate_and_eta():
    p = Progress(total_units=4, total_images=100)
    p.start -= 10.0  # 10 s ago
    line = p.step(25)
    assert line.startswith("units 1/4, images 25/100, ")
    rate = float(line.split(", ")[2].split()[0])
    assert 2.0 < rate < 2.6  # 25 images in ~10 s
    assert 28 <= int(line.rsplit("ETA ", 1)[1].rstrip("s")) <= 31  # 75 images left at ~2.5 img/s
    assert Progress(0, 10).step(5).startswith("images 5/10")


def test_duration_format():
    assert _duration(42) == "42s" and _duration(125) == "2m05s" and _duration(7260) == "2h01m"
