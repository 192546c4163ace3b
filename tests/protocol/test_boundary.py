import subprocess
import sys

# The add-on's zip carries protocol/ into Blender, whose Python has neither torch nor numpy to spare.
CHECK = """
import sys
import protocol, protocol.client, protocol.frames
heavy = sorted(name for name in sys.modules if name.split('.')[0] in ('torch', 'numpy', 'flowmotion', 'backend',
                                                                      'diffusers', 'PIL', 'imageio'))
print(heavy)
"""


def test_the_protocol_imports_only_the_standard_library_msgpack_and_zmq():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
