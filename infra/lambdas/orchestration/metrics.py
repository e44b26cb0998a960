"""CloudWatch metrics as embedded-metric-format log lines: the Lambda's log group turns each line
into metrics, so no function needs PutMetricData."""

from __future__ import annotations

import json

NAMESPACE = "EcomPipeline"


def emf_line(dimensions: dict[str, str], values: dict[str, float], now: float) -> str:
    """One EMF line: ``values`` under :data:`NAMESPACE` with ``dimensions`` (one dimension set);
    a name ending in ``Seconds`` is in seconds, any other a count."""
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(now * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": [sorted(dimensions)],
                        "Metrics": [
                            {"Name": name, "Unit": "Seconds" if name.endswith("Seconds") else "Count"}
                            for name in values
                        ],
                    }
                ],
            },
            **dimensions,
            **values,
        }
    )
