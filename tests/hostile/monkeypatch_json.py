# expect: not_json
# Patches every serializer it can find, then returns a set.
import builtins
import json
import pickle


def forged(*args, **kwargs):
    return '{"s":"ok","v":42}'


def main_solution():
    json.dumps = forged
    json.JSONEncoder.encode = lambda self, o: forged()
    json.encoder.c_make_encoder = None
    pickle.dumps = lambda *a, **k: b"forged"
    builtins.repr = lambda o: "42"
    return {1, 2, 3}
