"""Remove nodes whose outputs nobody reads, and constants no node reads."""


def remove_dead_code(model, keep=frozenset()):
    live = set(model.outputs) | set(keep)
    kept = []
    for node in reversed(model.nodes):
        if any(o in live for o in node.outputs):
            kept.append(node)
            live.update(i for i in node.inputs if i)
    changed = len(kept) != len(model.nodes)
    model.nodes = kept[::-1]
    unused = [c for c in model.constants if c not in live]
    for c in unused:
        del model.constants[c]
    return changed or bool(unused)
