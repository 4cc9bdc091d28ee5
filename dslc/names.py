"""Names: turning spec names into layer keys and Python identifiers that cannot collide with
torch.nn's own attributes or Python's keywords (used by elaboration and code generation)."""

from __future__ import annotations

import builtins
import keyword
import re
import unicodedata

# Attributes of nn.Module, nn.ModuleDict and nn.ModuleList (torch 2.x), which a layer may not
# shadow: `add_module` refuses them. Listed here so that compiling never imports torch.
NN_ATTRS = frozenset("""
T_destination _apply _backward_hooks _backward_pre_hooks _buffers _call_impl
_compiled_call_impl _forward_hooks _forward_hooks_always_called _forward_hooks_with_kwargs
_forward_pre_hooks _forward_pre_hooks_with_kwargs _get_abs_string_index _get_backward_hooks
_get_backward_pre_hooks _get_name _is_full_backward_hook _load_from_state_dict
_load_state_dict_post_hooks _load_state_dict_pre_hooks _maybe_warn_non_full_backward_hook
_modules _named_members _non_persistent_buffers_set _parameters
_register_load_state_dict_pre_hook _register_state_dict_hook _replicate_for_data_parallel
_save_to_state_dict _slow_forward _state_dict_hooks _state_dict_pre_hooks _version
_wrapped_call_impl add_module append apply bfloat16 buffers call_super_init children clear
compile cpu cuda double dump_patches eval extend extra_repr float forward get_buffer
get_extra_state get_parameter get_submodule half insert ipu items keys load_state_dict modules
mtia named_buffers named_children named_modules named_parameters parameters pop
register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
register_load_state_dict_pre_hook register_module register_parameter
register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ set_extra_state
set_submodule share_memory state_dict to to_empty train training type update values xpu
zero_grad
""".split())

# Names the generated code itself uses; a spec value may not shadow them.
CODEGEN_NAMES = frozenset({"self", "torch", "nn", "F", "t", "block"})
PY_BUILTINS = frozenset(dir(builtins))


def layer_key(name: str) -> str:
    """A state_dict key part for a layer the spec names: kept as written unless torch would
    refuse it as a submodule name."""
    if name in NN_ATTRS or keyword.iskeyword(name) or name.startswith("__"):
        return name + "_"
    return name


def py_ident(name: str) -> str:
    """A readable Python identifier for a spec name (NFKC-normalised, as Python reads source)."""
    s = unicodedata.normalize("NFKC", name)
    s = re.sub(r"\W", "_", s)
    if s.startswith("__") and not s.endswith("__"):
        # Python mangles `__x` (and `__x_`) inside a class body, parameter names included: a
        # keyword argument `__x=` would then not reach the parameter. One underscore is safe.
        s = "_" + s.lstrip("_")
    if not s or s[0].isdigit():
        s = "v_" + s
    if (keyword.iskeyword(s) or keyword.issoftkeyword(s) or s in PY_BUILTINS
            or s in CODEGEN_NAMES or s.startswith("__")):
        s = s + "_"
    return s


def is_plain_attr(name: str) -> bool:
    """True when `self.<name>` in source reaches the submodule registered as `name`."""
    return (name.isascii() and name.isidentifier() and not keyword.iskeyword(name)
            and name not in NN_ATTRS and not name.startswith("__"))
