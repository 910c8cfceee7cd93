"""devorg: a local Salesforce org emulator speaking the real APIs over HTTPS.

It stands beside the pipeline: it imports nothing of sf_pipeline, and the pipeline imports nothing of it
(only the CLI's demo and the tests bring them together).
"""

from .org import Org
from .runner import DevOrgServer

__all__ = ["DevOrgServer", "Org"]
