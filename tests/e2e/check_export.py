#!/usr/bin/env python3
"""check_export.py - checks an open-data export the way an importer reads it (FORMATS.md 1a, 1c).

Usage: check_export.py FORMAT FILE [--expect-rows N] [--key f1,f2] [--delimiter C] [--bbox S,W,N,E]
  FORMAT       json | jsonl | csv | geojson | records
  FILE         the export ("-" for stdin)
  --expect-rows N   exactly N rows (features, results)
  --key f1,f2       these fields are present, non-null, and unique together on every row
  --delimiter C     CSV separator (default ';')
  --bbox S,W,N,E    every point lies in this box (lat S..N, lon W..E): catches lat/lon swaps that the
                    range checks cannot (Issy, lat 48.8 lon 2.2, swapped is still in range)

Checks: the structure of the format (a bare array of flat objects; one object per line; a CSV with a
unique header and the same number of cells on every line; a FeatureCollection of Features whose
geometry is null or a Point [lon, lat]; {"total_count", "results"}); no NaN or Infinity; no duplicate
member names; every value that looks like a datetime (and every field whose name says it is one) is
ISO 8601 with an explicit offset; geo_point_2d is "lat,lon" (json, jsonl, csv, geojson properties) or
{"lon","lat"} (records) with |lat| <= 90 and |lon| <= 180; in GeoJSON, a geo_point_2d property must be
the same point as the geometry. Prints one summary line and exits 0, or prints the first problem and
exits 1 (2 for bad usage).
"""

import argparse
import csv
import io
import json
import math
import re
import sys

ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$")
LOOKS_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
TIME_FIELDS = {"bucket_start", "bucket_end", "updated_at", "last_reported", "observed_at", "published_at",
               "received_at", "last_updated"}


class Bad(Exception):
    pass


def no_constant(name):
    raise Bad("non-standard JSON number %s" % name)


def no_dup_pairs(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise Bad("duplicate member %r" % k)
        obj[k] = v
    return obj


def loads(text):
    try:
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_dup_pairs)
    except json.JSONDecodeError as e:
        raise Bad("invalid JSON: %s" % e)


def parse_latlon(s, where):
    if not isinstance(s, str):
        raise Bad("%s: geo_point_2d is %r, expected the string \"lat,lon\"" % (where, s))
    parts = s.split(",")
    if len(parts) != 2:
        raise Bad("%s: geo_point_2d %r is not \"lat,lon\"" % (where, s))
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise Bad("%s: geo_point_2d %r is not two numbers" % (where, s))
    return lat, lon


def check_point(lat, lon, where, bbox):
    for v in (lat, lon):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise Bad("%s: coordinate %r is not a finite number" % (where, v))
    if abs(lat) > 90:
        raise Bad("%s: latitude %r out of range (lat/lon swapped?)" % (where, lat))
    if abs(lon) > 180:
        raise Bad("%s: longitude %r out of range" % (where, lon))
    if bbox:
        s, w, n, e = bbox
        if not (s <= lat <= n and w <= lon <= e):
            raise Bad("%s: point lat=%r lon=%r outside --bbox (lat/lon swapped?)" % (where, lat, lon))


def check_value(name, v, where, geo_style, bbox):
    """Checks one field of a flat row; returns (lat, lon) for a geo point, else None."""
    if isinstance(v, (dict, list)) and not (name == "geo_point_2d" and geo_style == "object"):
        raise Bad("%s: field %r is not flat (%s)" % (where, name, type(v).__name__))
    if name == "geo_point_2d" and v not in (None, ""):
        if geo_style == "object":
            if not isinstance(v, dict) or set(v) != {"lon", "lat"}:
                raise Bad("%s: geo_point_2d is %r, expected {\"lon\":..,\"lat\":..}" % (where, v))
            lat, lon = v["lat"], v["lon"]
        else:
            lat, lon = parse_latlon(v, where)
        check_point(lat, lon, where, bbox)
        return lat, lon
    if isinstance(v, str) and (name in TIME_FIELDS or LOOKS_TIME_RE.match(v)) and v != "":
        if not ISO_RE.match(v):
            raise Bad("%s: %s %r is not ISO 8601 with an offset" % (where, name, v))
    elif name in TIME_FIELDS and v not in (None, ""):
        raise Bad("%s: %s %r is not an ISO 8601 string" % (where, name, v))
    return None


class Rows:
    def __init__(self, args):
        self.keys = [k for k in (args.key or "").split(",") if k]
        self.seen = set()
        self.n = 0
        self.geo = 0
        self.bbox = args.bbox

    def row(self, obj, where, geo_style="string"):
        if not isinstance(obj, dict):
            raise Bad("%s: not an object" % where)
        point = None
        for name, v in obj.items():
            p = check_value(name, v, where, geo_style, self.bbox)
            point = point or p
        if self.keys:
            key = []
            for k in self.keys:
                if k not in obj:
                    raise Bad("%s: key field %r missing" % (where, k))
                if obj[k] in (None, ""):
                    raise Bad("%s: key field %r is empty" % (where, k))
                key.append(obj[k])
            key = tuple(key)
            if key in self.seen:
                raise Bad("%s: duplicate key %r" % (where, key))
            self.seen.add(key)
        self.n += 1
        if point:
            self.geo += 1
        return point


def check_json(text, rows):
    doc = loads(text)
    if not isinstance(doc, list):
        raise Bad("top level is %s, expected a bare array" % type(doc).__name__)
    for i, obj in enumerate(doc):
        rows.row(obj, "row %d" % (i + 1))


def check_jsonl(text, rows):
    for i, line in enumerate(text.split("\n")):
        if line.strip() == "":
            if i != len(text.split("\n")) - 1:
                raise Bad("line %d: empty line" % (i + 1))
            continue
        rows.row(loads(line), "line %d" % (i + 1))


def check_records(text, rows):
    doc = loads(text)
    if not isinstance(doc, dict) or set(doc) != {"total_count", "results"}:
        raise Bad("expected {\"total_count\",\"results\"}, got %s" % (sorted(doc) if isinstance(doc, dict) else type(doc).__name__))
    tc = doc["total_count"]
    if isinstance(tc, bool) or not isinstance(tc, int) or tc < 0:
        raise Bad("total_count is %r" % tc)
    if not isinstance(doc["results"], list):
        raise Bad("results is not an array")
    for i, obj in enumerate(doc["results"]):
        rows.row(obj, "result %d" % (i + 1), geo_style="object")
    if tc < rows.n:
        raise Bad("total_count %d < %d results" % (tc, rows.n))
    return "total_count=%d" % tc


def check_geojson(text, rows):
    doc = loads(text)
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise Bad("not a FeatureCollection")
    feats = doc.get("features")
    if not isinstance(feats, list):
        raise Bad("features is not an array")
    for i, f in enumerate(feats):
        where = "feature %d" % (i + 1)
        if not isinstance(f, dict) or f.get("type") != "Feature":
            raise Bad("%s: not a Feature" % where)
        if "geometry" not in f or "properties" not in f:
            raise Bad("%s: geometry or properties missing" % where)
        g, props = f["geometry"], f["properties"]
        if props is None:
            props = {}
        geo_style = "object" if isinstance(props.get("geo_point_2d"), dict) else "string"
        prop_point = rows.row(props, where, geo_style=geo_style)
        if g is None:
            if prop_point:
                raise Bad("%s: null geometry but geo_point_2d %r" % (where, props["geo_point_2d"]))
            continue
        if not isinstance(g, dict) or g.get("type") != "Point":
            raise Bad("%s: geometry is not a Point" % where)
        c = g.get("coordinates")
        if not isinstance(c, list) or len(c) != 2:
            raise Bad("%s: coordinates %r are not [lon, lat]" % (where, c))
        lon, lat = c
        check_point(lat, lon, where + " geometry", rows.bbox)
        if prop_point and (abs(prop_point[0] - lat) > 1e-9 or abs(prop_point[1] - lon) > 1e-9):
            raise Bad("%s: geometry [lon,lat]=[%r,%r] differs from geo_point_2d lat,lon=%r (swapped?)"
                      % (where, lon, lat, prop_point))
        if not prop_point:
            rows.geo += 1


def check_csv(raw, rows, delimiter):
    bom = raw.startswith(b"\xef\xbb\xbf")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise Bad("not UTF-8: %s" % e)
    if "\x00" in text:
        raise Bad("NUL byte in CSV")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise Bad("empty file, no header row")
    except csv.Error as e:
        raise Bad("header: %s" % e)
    if len(set(header)) != len(header) or "" in header:
        raise Bad("header %r has empty or duplicate names" % header)
    for h in header:
        if not re.match(r"^[a-z0-9_]+$", h):
            raise Bad("header name %r is not ASCII snake_case" % h)
    try:
        for i, cells in enumerate(reader):
            where = "line %d" % (reader.line_num)
            if len(cells) != len(header):
                raise Bad("%s: %d cells, header has %d" % (where, len(cells), len(header)))
            rows.row({h: (c if c != "" else None) for h, c in zip(header, cells)}, where)
    except csv.Error as e:
        raise Bad("line %d: %s" % (reader.line_num, e))
    return "bom=%s" % ("yes" if bom else "no")


def main():
    ap = argparse.ArgumentParser(description="Check an open-data export.")
    ap.add_argument("format", choices=["json", "jsonl", "csv", "geojson", "records"])
    ap.add_argument("file")
    ap.add_argument("--expect-rows", type=int)
    ap.add_argument("--key")
    ap.add_argument("--delimiter", default=";")
    ap.add_argument("--bbox")
    args = ap.parse_args()
    if args.bbox:
        try:
            args.bbox = [float(x) for x in args.bbox.split(",")]
            assert len(args.bbox) == 4
        except (ValueError, AssertionError):
            ap.error("--bbox wants S,W,N,E")
    if len(args.delimiter) != 1:
        ap.error("--delimiter wants one character")

    name = args.file
    try:
        raw = sys.stdin.buffer.read() if name == "-" else open(name, "rb").read()
    except OSError as e:
        print("check_export: FAIL %s: %s" % (name, e))
        return 1
    rows = Rows(args)
    extra = None
    try:
        if args.format == "csv":
            extra = check_csv(raw, rows, args.delimiter)
        else:
            if raw.startswith(b"\xef\xbb\xbf"):
                raise Bad("BOM in a JSON document")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise Bad("not UTF-8: %s" % e)
            extra = {"json": check_json, "jsonl": check_jsonl, "geojson": check_geojson,
                     "records": check_records}[args.format](text, rows)
        if args.expect_rows is not None and rows.n != args.expect_rows:
            raise Bad("%d rows, expected %d" % (rows.n, args.expect_rows))
    except Bad as e:
        print("check_export: FAIL %s %s: %s" % (args.format, name, e))
        return 1
    summary = "check_export: OK %s %s rows=%d with_place=%d" % (args.format, name, rows.n, rows.geo)
    if rows.keys:
        summary += " unique_key=%s" % ",".join(rows.keys)
    if extra:
        summary += " " + extra
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
