#!/usr/bin/env python3
"""Tables and charts from the reports of scripts/bench-all.sh (docs/benchmarks.md).

    scripts/bench-report.py machine > target/bench/all/machine.json
    scripts/bench-report.py report target/bench/all --table results.md --charts docs/bench

`machine` describes this machine and the versions measured, as JSON. `report`
reads <dir>/<server>/<run>.json (the load generator's reports) and
<dir>/machine.json, writes the markdown tables (with the ratios of hubwire to
each peer and the seeds' targets side by side) and renders one SVG bar chart
per figure. Standard library only: the charts are plain SVG text.
"""

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

SERVERS = [
    # (directory, label, bar colour)
    ("hubwire", "hubwire", "#2b6cb0"),
    ("socketio", "Socket.IO 4", "#dd6b20"),
    ("raw", "raw WebSocket (limit)", "#718096"),
]
LABEL = {key: label for key, label, _ in SERVERS}
# The seeds' targets, per node.
TARGET_CONNECTIONS = 10_000
TARGET_MESSAGES = 10_000
TARGET_P99_MS = 100
TARGET_RECONNECT_S = 5
TARGET_BYTES_PER_CONNECTION = 2048


def machine():
    """This machine and the versions measured."""

    def sh(command):
        result = subprocess.run(command, shell=True, capture_output=True, text=True, check=False)
        return result.stdout.strip()

    def package(name):
        path = Path("bench/socketio/node_modules") / name / "package.json"
        return json.loads(path.read_text())["version"] if path.exists() else None

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
    mem_kib = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return {
        "date": datetime.date.today().isoformat(),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "open_files_per_process": sh("ulimit -n"),
        "rustc": sh("rustc --version"),
        "node": sh("node --version"),
        "socket_io": package("socket.io"),
        "redis_adapter": package("@socket.io/redis-adapter"),
        "redis_client": package("redis"),
        "redis_server": sh("redis-server --version"),
        "hubwire_commit": sh("git rev-parse --short HEAD"),
        "hubwire_uncommitted_changes": bool(sh("git status --porcelain -- node protocol backplane")),
    }


def median_key(report):
    """What orders the repeats of a run: p99 for a broadcast, throughput for echo."""
    if report.get("scenario") == "echo":
        return report["round_trips_per_second"]
    return report.get("latency", {}).get("p99_ms", 0)


def load(directory):
    """{server: {run: report}} for every report found. Repeats of a run
    (`<run>.r<i>.json`) become their median run, with every repeat's p99 and
    throughput kept under `repeats`."""
    runs = {}
    for key, _, _ in SERVERS:
        grouped = {}
        for path in sorted((directory / key).glob("*.json")):
            grouped.setdefault(path.name.split(".")[0], []).append(json.loads(path.read_text()))
        for name, reports in grouped.items():
            reports.sort(key=median_key)
            chosen = dict(reports[(len(reports) - 1) // 2])
            chosen["repeats"] = [
                {"p99_ms": dig(r, "latency", "p99_ms"), "per_second": r.get("deliveries_per_second", r.get("round_trips_per_second"))}
                for r in reports
            ]
            runs.setdefault(key, {})[name] = chosen
    return runs


def idle_sizes(runs):
    """The connection counts of the idle runs present, ascending."""
    names = {name for reports in runs.values() for name in reports if name.startswith("idle-")}
    return sorted(int(name.removeprefix("idle-")) for name in names if name.removeprefix("idle-").isdigit())


def number(value, digits=0):
    """1234.5 -> '1,234' (or with digits)."""
    return "–" if value is None else f"{value:,.{digits}f}"


def ms(value):
    if value is None:
        return "–"
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def kb(value):
    return "–" if value is None else f"{value / 1000:.1f} KB"


def ratio(a, b):
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def dig(value, *path):
    """value[path[0]][path[1]]..., or None."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def get(runs, server, run, *path):
    """A field of one report, or None."""
    return dig(runs.get(server, {}).get(run), *path)


def per_delivery_us(report, cpu_field, who):
    """CPU microseconds per delivery (or per round trip) of `who`."""
    if not report:
        return None
    seconds = (report.get(cpu_field) or {}).get(f"{who}_seconds")
    count = report.get("received", report.get("round_trips"))
    return None if seconds is None or not count else seconds * 1e6 / count


def core_share(report, cpu_field, who):
    """CPU use as a share of one core, over the measured seconds."""
    if not report:
        return None
    seconds = (report.get(cpu_field) or {}).get(f"{who}_seconds")
    return None if seconds is None or not report.get("seconds") else seconds / report["seconds"]


def pct(value):
    return "–" if value is None else f"{value * 100:.0f}%"


def comparison(title, rows):
    """A table: one row per (label, {server: value}, format[, True: no ratios]),
    a column per server, then the ratios."""
    lines = [
        f"| {title} | hubwire | Socket.IO 4 | raw (limit) | hubwire / Socket.IO | hubwire / raw |",
        "|---|---|---|---|---|---|",
    ]
    for label, values, fmt, *no_ratios in rows:
        h, s, r = (values.get(k) for k in ("hubwire", "socketio", "raw"))
        ratios = "| | |" if no_ratios else f"| {ratio(h, s)} | {ratio(h, r)} |"
        lines.append(f"| {label} | {fmt(h)} | {fmt(s)} | {fmt(r)} {ratios}")
    return "\n".join(lines)


def micros(value):
    return "–" if value is None else f"{value:.1f} µs"


def broadcast_runs(runs):
    """[(run name, label)] of the broadcast runs present, in order."""
    named = []
    for stress in (False, True):
        for topology in ("1node", "3nodes"):
            name = f"broadcast-{topology}" + ("-stress" if stress else "")
            sample = next((runs[k][name] for k in runs if name in runs[k]), None)
            if sample:
                nodes = "1 node" if topology == "1node" else "3 nodes + Redis"
                receivers = sample["connections"] // sample["groups"]
                load = f"{sample['rate']} msg/s × {receivers} receivers"
                named.append((name, f"{nodes}, {load}"))
    return named


def table(runs, machine_info):
    out = []
    if machine_info:
        m = machine_info
        out.append(
            f"Run on {m['date']}: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
            f"{m['open_files_per_process']} open files per process; {m['rustc']}; Node.js {m['node']}, "
            f"socket.io {m['socket_io']}, @socket.io/redis-adapter {m['redis_adapter']}, redis (npm) "
            f"{m['redis_client']}; {m['redis_server'].split(' sha=')[0]}; hubwire {m['hubwire_commit']}"
            + (" with uncommitted changes" if m.get("hubwire_uncommitted_changes") else "")
            + "."
        )
    sizes = idle_sizes(runs)
    out.append("### Idle connections, one node\n")
    idle_rows = []
    for n in sizes:
        run = f"idle-{n}"
        idle_rows.append((f"{n:,}: memory per connection ↓", {k: get(runs, k, run, "bytes_per_connection") for k in runs}, kb))
    for n in sizes:
        run = f"idle-{n}"
        idle_rows.append((f"{n:,}: connects/s ↑", {k: get(runs, k, run, "connects_per_second") for k in runs}, number))
    for n in sizes:
        run = f"idle-{n}"
        idle_rows.append((f"{n:,}: held", {k: get(runs, k, run, "opened") for k in runs}, number, True))
    out.append(comparison("connections", idle_rows))
    out.append(
        "\n(memory: resident set growth of the node process / connections held, on a fresh process; "
        "connects: 200 handshakes in flight; ↓ lower is better, ↑ higher is better)"
    )
    out.append("\n### Echo round trips, one node (100 connections, one call in flight each; median run by throughput)\n")
    echo = lambda *path: {k: get(runs, k, "echo", *path) for k in runs}
    out.append(
        comparison(
            "echo",
            [
                ("round trips/s ↑", echo("round_trips_per_second"), number),
                ("p50 ↓", echo("latency", "p50_ms"), ms),
                ("p99 ↓", echo("latency", "p99_ms"), ms),
                ("server CPU per round trip ↓", {k: per_delivery_us(runs[k].get("echo"), "cpu", "server") for k in runs}, micros),
                ("load generator CPU per round trip", {k: per_delivery_us(runs[k].get("echo"), "cpu", "loadtest") for k in runs}, micros),
            ],
        )
    )
    out.append("\n### Group broadcast\n")
    out.append(
        "| load | server | deliveries/s | lost | p50 | p99 | p99.9 | max | server CPU | per delivery | load generator CPU | p99 of each run |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    named = broadcast_runs(runs)
    for name, label in named:
        for key, server_label, _ in SERVERS:
            r = runs.get(key, {}).get(name)
            if not r:
                continue
            l = r["latency"]
            out.append(
                f"| {label} | {server_label} | {number(r['deliveries_per_second'])} | "
                f"{number(r['lost'])} / {number(r['expected_deliveries'])} | {ms(l['p50_ms'])} | {ms(l['p99_ms'])} | "
                f"{ms(l['p999_ms'])} | {ms(l['max_ms'])} | {pct(core_share(r, 'publishing_cpu', 'server'))} | "
                f"{number(per_delivery_us(r, 'publishing_cpu', 'server'), 1)} µs | "
                f"{pct(core_share(r, 'publishing_cpu', 'loadtest'))} | "
                + ", ".join(ms(x["p99_ms"]) for x in r.get("repeats", []))
                + " |"
            )
    out.append(
        "\n(each row: the median of its runs by p99; server CPU: all server processes together, Redis "
        "included on three nodes, as a share of one core over the publishing phase, 200% being the whole "
        "machine; per delivery: server CPU time / deliveries)\n"
    )
    rows = [(f"{label}: p99 ↓", {k: get(runs, k, name, "latency", "p99_ms") for k in runs}, ms) for name, label in named]
    rows += [
        (f"{label}: server CPU per delivery ↓", {k: per_delivery_us(runs[k].get(name), "publishing_cpu", "server") for k in runs}, micros)
        for name, label in named
    ]
    out.append(comparison("broadcast", rows))
    out.append("\n### The seeds' targets, per node\n")
    out.append(targets(runs))
    return "\n".join(out) + "\n"


def targets(runs):
    lines = [
        "| target (per node) | seeds | hubwire | Socket.IO 4 | raw (limit) |",
        "|---|---|---|---|---|",
    ]

    def cells(fn):
        return " | ".join(fn(k) for k in ("hubwire", "socketio", "raw"))

    def biggest_idle(k):
        held = [(n, get(runs, k, f"idle-{n}", "opened")) for n in idle_sizes(runs)]
        held = [(n, o) for n, o in held if o is not None]
        if not held:
            return "–"
        n, opened = held[-1]
        failures = get(runs, k, f"idle-{n}", "connect_failures")
        return f"{opened:,} of {n:,} held" + (f" ({failures:,} failed)" if failures else "")

    def rate(name):
        def cell(k):
            d = get(runs, k, name, "deliveries_per_second")
            lost = get(runs, k, name, "lost")
            return "–" if d is None else f"{d:,.0f} deliveries/s" + (f", {lost:,} lost" if lost else ", none lost")
        return cell

    def p99(k):
        parts = []
        for name, nodes in (("broadcast-1node", "1 node"), ("broadcast-3nodes", "3 nodes")):
            value = get(runs, k, name, "latency", "p99_ms")
            if value is not None:
                parts.append(f"{ms(value)} ({nodes})")
        return ", ".join(parts) or "–"

    def reconnect(k):
        seconds = get(runs, k, "idle-10000", "connect_seconds")
        return "–" if seconds is None else f"{seconds:.1f} s for all 10,000"

    def memory(k):
        return kb(get(runs, k, "idle-10000", "bytes_per_connection")) + " (10,000 idle)"

    stress = next((n for n, _ in broadcast_runs(runs) if n == "broadcast-1node-stress"), None)
    lines.append(f"| concurrent connections | ≥ {TARGET_CONNECTIONS:,} | {cells(biggest_idle)} |")
    lines.append(f"| messages/s | ≥ {TARGET_MESSAGES:,} | {cells(rate('broadcast-1node'))} |")
    if stress:
        lines.append(f"| messages/s, stress | | {cells(rate(stress))} |")
    lines.append(f"| p99 delivery | < {TARGET_P99_MS} ms | {cells(p99)} |")
    lines.append(f"| reconnect (proxy: a node's clients all reconnecting at once) | < {TARGET_RECONNECT_S} s | {cells(reconnect)} |")
    lines.append(f"| memory per connection | about {TARGET_BYTES_PER_CONNECTION // 1024} KB | {cells(memory)} |")
    return "\n".join(lines)


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def bar_chart(title, unit, groups, series, fmt, target=None):
    """Grouped vertical bars as SVG text. series: [(label, colour, [value or None per group])]."""
    width, height = 760, 390
    left, right, top, bottom = 70, 20, 50, 90
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, _, vs in series for v in vs if v is not None]
    highest = max(values + ([target[0]] if target else []) + [1e-9]) * 1.1
    # A round step for the grid: 1, 2, 2.5 or 5 times a power of ten, five lines at most.
    magnitude = 10 ** math.floor(math.log10(highest / 5))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude * 5 >= highest)
    lines = math.ceil(highest / step)
    peak = lines * step
    y = lambda v: top + plot_h - v / peak * plot_h
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for i in range(lines + 1):
        v = step * i
        svg.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e2e8f0"/>')
        svg.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#4a5568">{escape(fmt(v))}</text>')
    svg.append(
        f'<text x="16" y="{top + plot_h / 2}" transform="rotate(-90 16 {top + plot_h / 2})" text-anchor="middle" '
        f'fill="#4a5568">{escape(unit)}</text>'
    )
    slot = plot_w / max(len(groups), 1)
    bar = min(slot * 0.8 / max(len(series), 1), 90)
    for g, group in enumerate(groups):
        x0 = left + g * slot + (slot - bar * len(series)) / 2
        for line, text in enumerate(group.split("\n")):
            svg.append(
                f'<text x="{left + g * slot + slot / 2:.1f}" y="{top + plot_h + 18 + 15 * line}" '
                f'text-anchor="middle">{escape(text)}</text>'
            )
        for s, (_, colour, vs) in enumerate(series):
            v = vs[g]
            x = x0 + s * bar
            if v is None:
                svg.append(f'<text x="{x + bar / 2:.1f}" y="{top + plot_h - 4}" text-anchor="middle" fill="#a0aec0">n/a</text>')
                continue
            svg.append(
                f'<rect x="{x + 1:.1f}" y="{y(v):.1f}" width="{bar - 2:.1f}" height="{top + plot_h - y(v):.1f}" fill="{colour}"/>'
            )
            svg.append(f'<text x="{x + bar / 2:.1f}" y="{y(v) - 4:.1f}" text-anchor="middle" font-size="11">{escape(fmt(v))}</text>')
    if target:
        value, label = target
        svg.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#c53030" '
            'stroke-dasharray="6 4" stroke-width="1.5"/>'
        )
    svg.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#2d3748"/>')
    lx = left
    for label, colour, _ in series:
        svg.append(f'<rect x="{lx}" y="{height - 26}" width="12" height="12" fill="{colour}"/>')
        svg.append(f'<text x="{lx + 18}" y="{height - 16}">{escape(label)}</text>')
        lx += 30 + 7 * len(label)
    if target:
        svg.append(
            f'<line x1="{lx}" x2="{lx + 24}" y1="{height - 20}" y2="{height - 20}" stroke="#c53030" '
            'stroke-dasharray="6 4" stroke-width="1.5"/>'
        )
        svg.append(f'<text x="{lx + 30}" y="{height - 16}" fill="#c53030">{escape(target[1])}</text>')
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def charts(runs, directory):
    directory.mkdir(parents=True, exist_ok=True)
    present = [(k, label, colour) for k, label, colour in SERVERS if k in runs]
    sizes = idle_sizes(runs)
    named = broadcast_runs(runs)

    def series(fn, names):
        return [(label, colour, [fn(runs[k].get(name)) for name in names]) for k, label, colour in present]

    field = lambda *path: (lambda r: dig(r, *path))
    # "1 node, 34 msg/s × 300 receivers" -> "1 node\n10,200 deliveries/s"
    chart_groups = []
    for name, label in named:
        nodes, load = label.split(", ", 1)
        rate, receivers = (int(part.split()[0]) for part in load.split(" × "))
        chart_groups.append(f"{nodes}\n{rate * receivers:,} deliveries/s")
    figures = {
        "idle-memory.svg": bar_chart(
            "Node memory per idle connection (one node)",
            "KB per connection",
            [f"{n:,} connections" for n in sizes],
            series(lambda r: None if r is None or r.get("bytes_per_connection") is None else r["bytes_per_connection"] / 1000, [f"idle-{n}" for n in sizes]),
            lambda v: f"{v:.1f}",
            (TARGET_BYTES_PER_CONNECTION / 1000, "seeds' target: about 2 KB"),
        ),
        "idle-connect-rate.svg": bar_chart(
            "Connections opened per second (one node, 200 in flight)",
            "connections/s",
            [f"{n:,} connections" for n in sizes],
            series(field("connects_per_second"), [f"idle-{n}" for n in sizes]),
            lambda v: f"{v:,.0f}",
        ),
        "broadcast-p99.svg": bar_chart(
            "Group broadcast: p99 delivery latency",
            "ms",
            chart_groups,
            series(field("latency", "p99_ms"), [name for name, _ in named]),
            lambda v: f"{v:.0f}" if v >= 10 else f"{v:.1f}",
            (TARGET_P99_MS, "seeds' target: p99 < 100 ms"),
        ),
        "broadcast-cpu.svg": bar_chart(
            "Group broadcast: server CPU per delivery (Redis included)",
            "µs of CPU per delivery",
            chart_groups,
            series(lambda r: per_delivery_us(r, "publishing_cpu", "server"), [name for name, _ in named]),
            lambda v: f"{v:.1f}",
        ),
        "echo.svg": bar_chart(
            "Echo round trips per second (one node, 100 connections)",
            "round trips/s",
            ["echo"],
            series(field("round_trips_per_second"), ["echo"]),
            lambda v: f"{v:,.0f}",
        ),
    }
    for name, svg in figures.items():
        (directory / name).write_text(svg)
    return sorted(figures)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("machine", help="describe this machine as JSON")
    report = sub.add_parser("report", help="tables and charts from a bench-all run")
    report.add_argument("directory", type=Path)
    report.add_argument("--table", type=Path, help="write the markdown here (default: stdout)")
    report.add_argument("--charts", type=Path, help="render the SVG charts into this directory")
    args = parser.parse_args()
    if args.command == "machine":
        json.dump(machine(), sys.stdout, indent=2)
        print()
        return
    runs = load(args.directory)
    if not runs:
        sys.exit(f"no reports under {args.directory}")
    machine_path = args.directory / "machine.json"
    text = table(runs, json.loads(machine_path.read_text()) if machine_path.exists() else None)
    if args.table:
        args.table.write_text(text)
    else:
        sys.stdout.write(text)
    if args.charts:
        for name in charts(runs, args.charts):
            print(f"chart: {args.charts / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
