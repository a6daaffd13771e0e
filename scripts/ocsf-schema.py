#!/usr/bin/env python3
"""The JSON Schema that driftwatch's OCSF findings are validated against.

It is generated from the official OCSF release export (the schema server's
`export/schema` of that release) that the PyPI package ocsf-json-schema
ships, with that package's generator: JSON Schema draft 2020-12, every
object with its required attributes, types, the dictionary's enums and
`additionalProperties: false`, so an attribute the class, its objects or
the declared profiles do not define is an error.

    pip install "$(scripts/ocsf-schema.py --requirement)"
    scripts/ocsf-schema.py            # (re)writes the committed fixture
    scripts/ocsf-schema.py --check    # fails if the fixture differs from a fresh generation
    scripts/ocsf-schema.py --version 1.3.0 --profiles "" --output FILE
                                      # another release or profile set, to compare

The defaults below are what the OCSF encoder declares (src/codec/output/ocsf.rs:
OCSF_VERSION and the profiles of metadata.profiles); change them together.
"""
import argparse
import importlib.metadata
import json
import pathlib
import sys

PACKAGE = "ocsf-json-schema"
PACKAGE_VERSION = "1.2.0"
OCSF_VERSION = "1.8.0"
CLASS_UID = 2004  # Detection Finding
PROFILES = ["host", "incident"]
ROOT = pathlib.Path(__file__).resolve().parents[1]


def fixture_path(version):
    return ROOT / "tests" / "fixtures" / "ocsf" / version / "detection_finding.schema.json"


def generate(version, profiles):
    try:
        installed = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        sys.exit(f"ocsf-schema: {PACKAGE} is not installed: pip install {PACKAGE}=={PACKAGE_VERSION}")
    if installed != PACKAGE_VERSION:
        sys.exit(f"ocsf-schema: {PACKAGE} {installed} is installed; the fixture is generated with "
                 f"{PACKAGE_VERSION}: pip install {PACKAGE}=={PACKAGE_VERSION}")
    from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema, get_packaged_versions

    if version not in get_packaged_versions():
        sys.exit(f"ocsf-schema: OCSF {version} is not in {PACKAGE} {PACKAGE_VERSION} "
                 f"(it has {', '.join(sorted(get_packaged_versions()))})")
    export = get_ocsf_schema(version=version)
    if export.get("version") != version:
        sys.exit(f"ocsf-schema: the export of {version} says it is {export.get('version')}")
    ocsf = OcsfJsonSchemaEmbedded(export)
    name = ocsf.lookup_class_name_from_uid(CLASS_UID)
    # The generator accepts any profile name; a profile the class does not
    # have in this release must not be declared.
    known = export["classes"][name].get("profiles") or []
    unknown = sorted(set(profiles) - set(known))
    if unknown:
        sys.exit(f"ocsf-schema: {name} has no profile {', '.join(unknown)} in OCSF {version} "
                 f"(it has {', '.join(known) or 'none'})")
    schema = ocsf.get_class_schema(name, profiles)
    # Embedded objects are added in set order: sorted keys make the file
    # the same on every run.
    return json.dumps(schema, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", default=OCSF_VERSION, help=f"OCSF release (default {OCSF_VERSION})")
    ap.add_argument("--profiles", default=",".join(PROFILES),
                    help=f"comma-separated profiles (default {','.join(PROFILES)})")
    ap.add_argument("--output", type=pathlib.Path, help="file to write (default: the committed fixture)")
    ap.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    ap.add_argument("--requirement", action="store_true", help="print the pinned package requirement")
    args = ap.parse_args()
    if args.requirement:
        print(f"{PACKAGE}=={PACKAGE_VERSION}")
        return
    profiles = sorted(p for p in args.profiles.split(",") if p)
    out = args.output or fixture_path(args.version)
    text = generate(args.version, profiles)
    if args.check:
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            sys.exit(f"ocsf-schema: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} differs from "
                     f"what {PACKAGE} {PACKAGE_VERSION} generates; run scripts/ocsf-schema.py")
        print(f"ocsf-schema: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} is "
              f"{PACKAGE} {PACKAGE_VERSION}'s OCSF {args.version} Detection Finding "
              f"(profiles {','.join(profiles) or 'none'})")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"ocsf-schema: wrote {out} (OCSF {args.version} Detection Finding, profiles {','.join(profiles) or 'none'})")


if __name__ == "__main__":
    main()
