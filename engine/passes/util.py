"""Small graph-editing helpers shared by the passes."""


def replace_uses(model, old, new):
    """Make every reader of value ``old`` read ``new`` instead (outputs included)."""
    for n in model.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
    model.outputs = [new if o == old else o for o in model.outputs]


def single_consumer(model, value, keep):
    """The only node reading ``value``, if it has exactly one and ``value`` is not kept."""
    if value in keep or value in model.outputs:
        return None
    users = model.consumers().get(value, [])
    return users[0] if len(users) == 1 and users[0].inputs.count(value) == 1 else None


def unique_constant_name(model, stem):
    name, k = stem, 0
    taken = set(model.constants) | {o for n in model.nodes for o in n.outputs} | set(model.input_names)
    while name in taken:
        k += 1
        name = f"{stem}#{k}"
    return name
