"""Peak memory of reading one large sitemap and one large feed (shared/sources/read.py).

    python bench/sources_memory.py [--urls 50000] [--entries 20000]

Writes a Google News sitemap of --urls URLs and an RSS feed of --entries items (each with a
title, a date and a description, as real feeds carry) to a temporary directory, then reads each
in a fresh process and prints, per file: its size, the URLs read, the seconds taken, the
process's resident memory before reading (interpreter, libraries and the body in memory) and at
its peak, and the difference the reading itself costs.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sitemap(n: int) -> bytes:
    urls = "".join(
        f"<url><loc>https://news.example/{i:06d}/a-story-about-something-{i}</loc>"
        f"<lastmod>2025-03-{1 + i % 28:02d}T10:00:00Z</lastmod><news:news><news:publication>"
        "<news:name>News</news:name><news:language>en</news:language></news:publication>"
        f"<news:publication_date>2025-03-01</news:publication_date><news:title>Story {i}"
        "</news:title></news:news></url>\n" for i in range(n))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/'
            'schemas/sitemap/0.9" xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">\n'
            f"{urls}</urlset>\n").encode()


def feed(n: int) -> bytes:
    items = "".join(
        f"<item><title>Story {i}</title><link>https://news.example/{i:06d}/story</link>"
        f"<guid>https://news.example/{i:06d}/story</guid>"
        "<pubDate>Sat, 01 Mar 2025 10:00:00 GMT</pubDate>"
        f"<description>{'A paragraph of summary text. ' * 8}</description></item>\n"
        for i in range(n))
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
            f"<title>News</title>\n{items}</channel></rss>\n").encode()


def _status_kib(field: str) -> int:
    """A memory figure of this process from /proc (VmRSS: now, VmHWM: its peak). Not
    getrusage's ru_maxrss: that keeps the peak of the parent that forked this process."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def measure(path: str) -> None:
    """In a fresh process: read one file and print its figures as JSON."""
    from shared.sources.read import read_source

    body = Path(path).read_bytes()
    before = _status_kib("VmRSS")
    started = time.perf_counter()
    listing = read_source(body, "https://news.example/source", limit=1_000_000)
    seconds = time.perf_counter() - started
    peak = _status_kib("VmHWM")
    print(json.dumps({"mb": round(len(body) / 1e6, 1), "urls": len(listing.pages),
                      "seconds": round(seconds, 2), "rss_before_mb": round(before / 1024),
                      "peak_mb": round(peak / 1024),
                      "reading_mb": round((peak - before) / 1024)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--urls", type=int, default=50_000)
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, body in ((f"sitemap of {args.urls} URLs", sitemap(args.urls)),
                           (f"RSS feed of {args.entries} entries", feed(args.entries))):
            path = Path(tmp) / "source"
            path.write_bytes(body)
            del body
            out = subprocess.run([sys.executable, __file__, "--measure", str(path)],
                                 check=True, capture_output=True, text=True).stdout
            figures = json.loads(out)
            print(f"{name}: {figures['mb']} MB, {figures['urls']} URLs in "
                  f"{figures['seconds']} s; RSS {figures['rss_before_mb']} MB before, "
                  f"{figures['peak_mb']} MB at peak: reading costs {figures['reading_mb']} MB")


if __name__ == "__main__":
    main()
