"""Prints the identities and typedefs of a YANG module as JSON, read with pyang.

Used by the tree-comparison test: identities map each base identity to the identities derived
from it; typedefs map each typedef to its base type and its restriction (identityref base or
string pattern).
"""
import json
import sys

from pyang import context, repository


def main():
    search_path, module_file = sys.argv[1], sys.argv[2]
    ctx = context.Context(repository.FileRepository(search_path))
    with open(module_file, encoding="utf-8") as f:
        module = ctx.add_module(module_file, f.read())
    ctx.validate()
    if module is None:
        sys.exit(f"{module_file}: does not parse")
    identities = {}
    for ident in module.search("identity"):
        identities.setdefault(ident.arg, [])
        for base in ident.search("base"):
            identities.setdefault(base.arg, []).append(ident.arg)
    typedefs = {}
    for typedef in module.search("typedef"):
        ty = typedef.search_one("type")
        if ty.arg == "identityref":
            typedefs[typedef.arg] = [ty.arg, ty.search_one("base").arg]
        else:
            typedefs[typedef.arg] = [ty.arg, "".join(p.arg for p in ty.search("pattern"))]
    print(json.dumps({"identities": identities, "typedefs": typedefs}, sort_keys=True))


main()
