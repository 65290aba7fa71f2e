from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    """``{{ row.scores|get_item:name }}``: a dict lookup by a variable key."""
    if not mapping:
        return None
    return mapping.get(key)


@register.filter
def metric_label(name):
    """A metric's label from its registry name (the name itself when unknown)."""
    from transferability.metrics import REGISTRY

    spec = REGISTRY.get(name)
    return spec.label if spec else name
