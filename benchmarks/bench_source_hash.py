"""What resuming safely costs: upscale-video identifies its source by size and the SHA-256 of the
whole file (animesr.video.workdir.file_identity), read once at the start of every run. This
times that on a generated file against a plain read of the same file (both from the page cache,
just written: the CPU's cost; a cold disk adds its own read speed to both).

    python benchmarks/bench_source_hash.py              # 1 GiB
    python benchmarks/bench_source_hash.py --mib 4096 --json benchmarks/results/bench_source_hash.json
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from animesr.video.workdir import file_identity
from report import machine, parser, write_report

BLOCK = 1 << 22


def main() -> None:
    options = parser(__doc__, "bench_source_hash")
    options.add_argument("--mib", type=int, default=1024, help="size of the generated file")
    options.add_argument("--repeats", type=int, default=3, help="best of this many")
    args = options.parse_args()
    if args.mib < 1 or args.repeats < 1:
        options.error("--mib and --repeats must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bench-hash-") as folder:
        path = Path(folder) / "source.bin"
        _write(path, args.mib)
        read = min(_timed(lambda: _read(path)) for _ in range(args.repeats))
        hashed = min(_timed(lambda: file_identity(path)) for _ in range(args.repeats))
    gib = args.mib / 1024
    report = {
        "machine": machine(),
        "mib": args.mib,
        "read_seconds": round(read, 3),
        "identity_seconds": round(hashed, 3),
        "identity_seconds_per_gib": round(hashed / gib, 3),
        "identity_gib_per_second": round(gib / hashed, 2),
        "identity_over_read": round(hashed / read, 2),
    }
    print(f"{args.mib} MiB from the page cache: plain read {read:.2f} s, size + SHA-256 {hashed:.2f} s "
          f"({hashed / gib:.2f} s per GiB, {gib / hashed:.2f} GiB/s; {hashed / read:.1f}× a plain read)")
    write_report(args.json, report)
    print(f"wrote {args.json}")


def _write(path: Path, mib: int) -> None:
    block = os.urandom(BLOCK)
    with path.open("wb") as f:
        for start in range(0, mib << 20, BLOCK):
            f.write(block[: (mib << 20) - start])


def _read(path: Path) -> None:
    with path.open("rb") as f:
        while f.read(BLOCK):
            pass


def _timed(work) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


if __name__ == "__main__":
    main()
