"""Recording of every visit (its own issue): taps media/ Producers, writes segments and manifests.

It may import only media/.
"""
