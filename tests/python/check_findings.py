#!/usr/bin/env python3
"""Independent readers for driftwatch's finding encodings.

    check_findings.py json  FILE   # contract JSON lines
    check_findings.py ocsf  FILE   # OCSF Detection Finding JSON lines (jsonschema)
    check_findings.py ocf   FILE   # Avro object container file (fastavro)
    check_findings.py framed FILE  # hex lines of Confluent-framed Avro (fastavro)

Exits non-zero with the first problem found; prints how many were read.

OCSF records are validated as a SIEM that validates by declared version
would: each record's `metadata.version` and `metadata.profiles` select the
JSON Schema generated from that OCSF release for exactly those profiles,
committed under tests/fixtures/ocsf/<version>/ (scripts/ocsf-schema.py
makes it), and the record must satisfy it. A version or profile set with
no committed schema is an error.
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


# OCSF Detection Finding (class_uid 2004): the JSON Schemas of the OCSF
# releases the encoder may declare, by version.
OCSF_FIXTURES = ROOT / "tests" / "fixtures" / "ocsf"


def ocsf_schemas():
    """{version: (profiles, validator)} of the committed schemas."""
    from urllib.parse import parse_qs, urlparse
    import jsonschema

    out = {}
    for path in sorted(OCSF_FIXTURES.glob("*/detection_finding.schema.json")):
        schema = json.load(open(path, encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        # $id: https://schema.ocsf.io/schema/<version>/classes/detection_finding?profiles=a,b
        url = urlparse(schema["$id"])
        version = url.path.strip("/").split("/")[1]
        if version != path.parent.name:
            fail(f"{path}: $id says OCSF {version}")
        profiles = frozenset(p for p in parse_qs(url.query).get("profiles", [""])[0].split(",") if p)
        out[version] = (profiles, jsonschema.Draft202012Validator(schema))
    if not out:
        fail(f"no OCSF schema under {OCSF_FIXTURES}")
    return out


def ocsf_errors(rec, schemas):
    """What is wrong with one OCSF record against the schema of the version
    and profiles it declares, as messages (none when it is valid)."""
    md = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
    version = md.get("version")
    if version not in schemas:
        return [f"declares OCSF {version!r}, for which no schema is committed "
                f"(tests/fixtures/ocsf has {', '.join(sorted(schemas))})"]
    known, validator = schemas[version]
    declared = md.get("profiles", [])
    if not isinstance(declared, list) or frozenset(declared) != known or len(set(declared)) != len(declared):
        return [f"declares profiles {declared}; the OCSF {version} schema is for {sorted(known)}"]
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
            for e in sorted(validator.iter_errors(rec), key=lambda e: list(map(str, e.absolute_path)))]


def check_ocsf(rec, where, schemas):
    errors = ocsf_errors(rec, schemas)
    if errors:
        fail(f"{where}: not valid OCSF: " + "; ".join(errors[:5])
             + (f"; and {len(errors) - 5} more" if len(errors) > 5 else ""))
    # What the schema cannot say: driftwatch's mapping of the lifecycle.
    if rec["class_uid"] != 2004 or rec["category_uid"] != 2:
        fail(f"{where}: not a Detection Finding")
    if rec["activity_id"] not in (1, 2, 3):
        fail(f"{where}: activity_id {rec['activity_id']}")
    if rec["type_uid"] != 200400 + rec["activity_id"]:
        fail(f"{where}: type_uid {rec['type_uid']}")
    status = {1: 1, 2: 2, 3: 4}[rec["activity_id"]]
    if rec.get("status_id") != status:
        fail(f"{where}: status_id {rec.get('status_id')} for activity {rec['activity_id']}")
    fi = rec["finding_info"]
    for k in ("uid", "title"):
        if not fi.get(k):
            fail(f"{where}: finding_info.{k} missing")
    if not rec.get("assignee_group", {}).get("name"):
        fail(f"{where}: no assignee_group.name (the contributing team)")
    if not rec.get("remediation", {}).get("desc"):
        fail(f"{where}: no remediation.desc")


def check_schema_bites(rec, schemas):
    """The validation is not vacuous: changes of a valid record that a
    SIEM validating by declared version rejects are rejected here."""
    import copy

    def changed(f):
        r = copy.deepcopy(rec)
        f(r)
        return r

    probes = {
        "an attribute the class does not define": lambda r: r.update(assignee_team={"name": "x"}),
        "a declared version without its schema": lambda r: r["metadata"].update(version="1.3.0"),
        "a profile the schema was not made for": lambda r: r["metadata"].update(
            profiles=r["metadata"]["profiles"] + ["cloud"]),
        "a required attribute missing": lambda r: r["finding_info"].pop("uid"),
        "a value outside an enum": lambda r: r.update(severity_id=7),
        "a wrong type": lambda r: r.update(time=str(r["time"])),
        "an unknown attribute in an object": lambda r: r["metadata"]["product"].update(team="x"),
    }
    for what, f in probes.items():
        if not ocsf_errors(changed(f), schemas):
            fail(f"the OCSF schema accepts {what}")


def lines(path):
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        if line.strip():
            yield n, line


def main():
    if len(sys.argv) != 3:
        fail("usage: check_findings.py json|ocsf|ocf|framed FILE")
    kind, path = sys.argv[1], sys.argv[2]
    count = 0
    if kind == "json":
        for n, line in lines(path):
            check_contract(json.loads(line), f"{path}:{n}")
            count += 1
    elif kind == "ocsf":
        schemas = ocsf_schemas()
        first = None
        for n, line in lines(path):
            rec = json.loads(line)
            check_ocsf(rec, f"{path}:{n}", schemas)
            first = first or rec
            count += 1
        if first:
            check_schema_bites(first, schemas)
            version = first["metadata"]["version"]
            kind = f"ocsf {version} ({', '.join(sorted(schemas[version][0]))})"
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
