"""`countertop bench --quick --json` runs the whole benchmark on the simulator and writes figures of the right shape.

Only shape and sanity are checked (every figure present, positive where it must be, medians within their
p95): the machine is shared, so no figure is held to its target here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"interpreter_start_ms", "bare_imports_ms", "nfc_udp_round_trip_ms", "codec_and_commit_ms"}
FIGURES = {
    "boot_run_ms",
    "boot_sim_ms",
    "idle_cpu_firmware_pct",
    "idle_cpu_process_pct",
    "rss_run_idle_mb",
    "rss_sim_idle_mb",
    "rss_sim_after_sales_mb",
    "rss_sim_growth_after_warmup_mb",
    "keypress_to_screen_ms",
    "swipe_to_result_ms",
    "swipe_host_ms",
    "swipe_terminal_ms",
    "tap_to_result_ms",
    "tap_host_ms",
    "tap_terminal_ms",
    "card_in_field_ms",
    "tap_apdus",
    "report_day_ms",
    "report_month_ms",
    "report_year_ms",
    "report_ten_years_ms",
}
MAY_BE_ZERO = {"idle_cpu_firmware_pct", "idle_cpu_process_pct", "card_in_field_ms"}  # below the clocks' resolution
SIGNED = {"rss_sim_growth_after_warmup_mb"}  # memory may also shrink


def test_bench_quick_json(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "firmware.shell.cli", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "boot_sim_ms" in done.stdout and "floor" in done.stdout  # the table is printed too
    result = json.loads(out.read_text())
    assert result["quick"] is True and result["machine"]["cpus"] >= 1 and result["date"]
    assert result["bytecode"] is True  # boots measured from compiled code, as installed
    assert set(result["floors"]) == FLOORS
    assert FIGURES <= set(result["figures"])
    for name, f in [*result["floors"].items(), *result["figures"].items()]:
        assert f["n"] >= 1 and f["unit"], name
        if name in SIGNED:
            continue
        assert 0 <= f["median"] <= f["p95"], name
        if name not in MAY_BE_ZERO:
            assert f["median"] > 0, name
    figures = result["figures"]
    assert figures["tap_apdus"]["median"] >= 2  # at least SELECT PPSE and GPO for every tap
    assert (
        figures["rss_sim_after_sales_mb"]["sales"] >= 1
        and figures["rss_run_idle_mb"]["target"] == 45
        and figures["report_year_ms"]["rows"] >= 1000
    )
    assert figures["swipe_host_ms"]["median"] < figures["swipe_to_result_ms"]["median"]  # the host's part is apart
    assert figures["boot_sim_ms"]["target"] == 400 and figures["report_ten_years_ms"]["target"] == 300
