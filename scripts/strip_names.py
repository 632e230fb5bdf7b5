"""Write a copy of a .tflite graph with every tensor name and signature removed, standing in for
graphs from converters whose names q3ref does not know (diff must fall back to numeric alignment).

    python scripts/strip_names.py IN.tflite OUT.tflite
"""

import sys

from ai_edge_litert.tools import flatbuffer_utils

model = flatbuffer_utils.read_model(sys.argv[1])
flatbuffer_utils.strip_strings(model)
flatbuffer_utils.write_model(model, sys.argv[2])
print(f"wrote {sys.argv[2]}")
