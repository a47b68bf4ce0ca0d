# Helpers shared by the rule files.


def P(*keys):
    """The params.yaml values a rule reads, keyed like dvc.yaml's `params:` (e.g. "common.seed").

    Snakemake re-runs a rule when one of its params changes, exactly as DVC does.
    """
    values = {}
    for key in keys:
        node = config
        for part in key.split("."):
            node = node[part]
        values[key] = node
    return values
