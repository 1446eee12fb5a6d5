"""An import-linter contract import-linter lacks: these modules import the standard library only.

`forbidden` names what may not be imported, so a new SDK would slip through; this names what
may be: the standard library (`sys.stdlib_module_names`) and the project modules listed in
`allowed_modules` (the layers below). pyproject.toml registers it as `stdlib_only`.
"""

from __future__ import annotations

import sys
from typing import Any

from importlinter import Contract, ContractCheck, fields, output


class StdlibOnlyContract(Contract):
    """Configuration: `source_modules` (packages or modules), `allowed_modules` (project
    modules they may import besides themselves and the standard library)."""

    type_name = "stdlib_only"

    source_modules = fields.ListField(subfield=fields.StringField())
    allowed_modules = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph: Any, verbose: bool) -> ContractCheck:
        # The fields hold parsed values once the contract is built; their class types say not.
        fields_: Any = self
        sources: list[str] = list(fields_.source_modules)
        allowed: list[str] = list(fields_.allowed_modules or [])
        root = sources[0].split(".")[0]
        inside = [*sources, *allowed]
        illegal: list[dict[str, Any]] = []
        for source in sources:
            for importer in sorted({source} | graph.find_descendants(source)):
                for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                    top = imported.split(".")[0]
                    if top == root:
                        if any(imported == m or imported.startswith(m + ".") for m in inside):
                            continue
                    elif top in sys.stdlib_module_names:
                        continue
                    details = graph.get_import_details(importer=importer, imported=imported)
                    lines = sorted({d["line_number"] for d in details})
                    illegal.append({"importer": importer, "imported": imported, "lines": lines})
        return ContractCheck(kept=not illegal, metadata={"illegal": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for item in check.metadata["illegal"]:
            where = ", ".join(f"l.{n}" for n in item["lines"]) or "?"
            output.print_error(
                f"{item['importer']} imports {item['imported']} ({where}), "
                "which is neither the standard library nor an allowed module",
                bold=False,
            )
        output.new_line()


if __name__ == "__main__":  # pragma: no cover - imported by lint-imports, not run
    sys.exit("import_rules.py is loaded by lint-imports (pyproject.toml: contract_types)")
