#!/usr/bin/env python3
"""Independent readers for driftwatch's finding encodings.

    check_findings.py json  FILE   # contract JSON lines
    check_findings.py ocsf  FILE   # OCSF 1.3 Detection Finding JSON lines
    check_findings.py ocf   FILE   # Avro object container file (fastavro)
    check_findings.py framed FILE  # hex lines of Confluent-framed Avro (fastavro)

Exits non-zero with the first problem found; prints how many were read.
"""
import io
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONTRACT_FIELDS = {
    "finding_id", "status", "rule", "severity", "worker_id", "subject", "summary",
    "accountable_owner", "contributing_owner", "detected_at", "remediation_deadline",
    "escalation", "evidence", "frameworks", "detector",
}
STATUSES = {"OPEN", "ESCALATED", "RESOLVED"}


def fail(msg):
    print(f"check_findings: {msg}", file=sys.stderr)
    sys.exit(1)


def check_contract(rec, where):
    missing = CONTRACT_FIELDS - set(rec)
    if missing:
        fail(f"{where}: missing contract fields {sorted(missing)}")
    extra = set(rec) - CONTRACT_FIELDS - {"transitioned_at"}
    if extra:
        fail(f"{where}: fields outside the contract {sorted(extra)}")
    if rec["status"] not in STATUSES:
        fail(f"{where}: status {rec['status']}")
    for k in ("system",):
        if k not in rec["subject"]:
            fail(f"{where}: subject lacks {k}")
    if rec["accountable_owner"]["role"] != "IDENTITY_GOVERNANCE_PROCESS_OWNER":
        fail(f"{where}: accountable owner role {rec['accountable_owner']['role']}")
    if rec["contributing_owner"]["role"] not in {"HR", "IT", "APP_OWNER"}:
        fail(f"{where}: contributing owner role {rec['contributing_owner']['role']}")
    for ev in rec["evidence"]:
        for k in ("topic", "partition", "offset", "event_id", "event_type", "occurred_at"):
            if k not in ev:
                fail(f"{where}: evidence lacks {k}")


# OCSF 1.3 Detection Finding (class_uid 2004): required attributes of the
# class and of the objects it requires.
OCSF_REQUIRED = ["activity_id", "category_uid", "class_uid", "finding_info", "metadata",
                 "severity_id", "time", "type_uid"]


def check_ocsf(rec, where):
    for k in OCSF_REQUIRED:
        if k not in rec:
            fail(f"{where}: OCSF required attribute {k} missing")
    if rec["class_uid"] != 2004 or rec["category_uid"] != 2:
        fail(f"{where}: not a Detection Finding")
    if rec["activity_id"] not in (1, 2, 3):
        fail(f"{where}: activity_id {rec['activity_id']}")
    if rec["type_uid"] != 200400 + rec["activity_id"]:
        fail(f"{where}: type_uid {rec['type_uid']}")
    if rec["severity_id"] not in (0, 1, 2, 3, 4, 5, 6, 99):
        fail(f"{where}: severity_id {rec['severity_id']}")
    if not isinstance(rec["time"], int):
        fail(f"{where}: time is not a timestamp in ms")
    fi = rec["finding_info"]
    for k in ("uid", "title"):
        if not fi.get(k):
            fail(f"{where}: finding_info.{k} missing")
    md = rec["metadata"]
    if not md.get("version") or not md.get("product", {}).get("name") or not md["product"].get("vendor_name"):
        fail(f"{where}: metadata.version / product.name / product.vendor_name missing")
    status = {1: 1, 2: 2, 3: 4}[rec["activity_id"]]
    if rec.get("status_id") != status:
        fail(f"{where}: status_id {rec.get('status_id')} for activity {rec['activity_id']}")
    if "incident" in md.get("profiles", []) and not rec.get("assignee_group", {}).get("name"):
        fail(f"{where}: incident profile without assignee_group.name")


def lines(path):
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        if line.strip():
            yield n, line


def main():
    kind, path = sys.argv[1], sys.argv[2]
    count = 0
    if kind == "json":
        for n, line in lines(path):
            check_contract(json.loads(line), f"{path}:{n}")
            count += 1
    elif kind == "ocsf":
        for n, line in lines(path):
            check_ocsf(json.loads(line), f"{path}:{n}")
            count += 1
    else:
        import fastavro
        schema = fastavro.parse_schema(json.load(open(ROOT / "schemas" / "finding.avsc")))
        if kind == "ocf":
            with open(path, "rb") as f:
                for n, rec in enumerate(fastavro.reader(f, reader_schema=schema), 1):
                    check_contract(rec, f"{path}#{n}")
                    count += 1
        elif kind == "framed":
            for n, line in lines(path):
                raw = bytes.fromhex(line.strip())
                if raw[0] != 0 or len(raw) < 5:
                    fail(f"{path}:{n}: no Confluent header")
                rec = fastavro.schemaless_reader(io.BytesIO(raw[5:]), schema)
                check_contract(rec, f"{path}:{n}")
                count += 1
        else:
            fail(f"unknown kind {kind}")
    if count == 0:
        fail(f"{path}: no findings")
    print(f"{kind}: {count} findings read and checked")


if __name__ == "__main__":
    main()
