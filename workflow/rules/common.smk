# Helpers shared by the workflow files.


def P(*keys):
    """The params.yaml values a step reads, keyed exactly like the `params` lists in dvc.yaml
    (e.g. "common.seed"). Snakemake re-runs a job when one of these values changes, as DVC does.
    """
    values = {}
    for key in keys:
        node = config
        for part in key.split("."):
            node = node[part]
        values[key] = node
    return values
