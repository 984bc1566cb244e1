//! The few libyang functions that yang5 does not wrap, behind safe functions.
//!
//! This is the only module of qkdn that contains `unsafe` code. It reads compiled-schema facts
//! that the datastore needs to decide how much of a tree a change must revalidate (XPath atoms of
//! `when`/`must`, leafref targets, `unique` leaves), the member type a union value resolved to,
//! and the canonical form of a single value. Every function takes yang5 handles, whose lifetimes
//! guarantee the context (and so every pointer read here) outlives the call, and copies what it
//! reads into owned Rust values before returning.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};

use yang5::context::Context;
use yang5::data::DataNodeRef;
use yang5::ffi;
use yang5::schema::{DataValueType, SchemaNode};

/// Address of a compiled schema node, used as an identity when mapping libyang nodes to qkdn's
/// schema model.
pub(crate) type SchemaAddr = usize;

/// The schema nodes a node's constraints read.
#[derive(Debug, Default)]
pub(crate) struct ConstraintAtoms {
    /// Nodes read by `when`, `must`, leafref paths and `unique` statements.
    pub(crate) nodes: Vec<SchemaAddr>,
    /// The node carries a constraint whose reach cannot be bounded (an instance-identifier that
    /// requires its target, or an expression libyang could not analyse).
    pub(crate) unbounded: bool,
    /// The node carries at least one constraint.
    pub(crate) any: bool,
    /// The node is a list with a `unique` statement (a constraint across its entries).
    pub(crate) unique: bool,
}

/// Number of elements of a libyang "sized array" (the count is stored just before element 0).
///
/// # Safety
/// `array` must be null or point to element 0 of a libyang sized array.
unsafe fn sized_array_len<T>(array: *const T) -> usize {
    if array.is_null() {
        0
    } else {
        // SAFETY: libyang stores the element count as a u64 immediately before the array.
        unsafe { *(array as *const u64).offset(-1) as usize }
    }
}

/// Moves the schema nodes of a libyang set into `out` and frees the set.
///
/// # Safety
/// `set` must be null or a set of schema nodes returned by libyang and not yet freed.
unsafe fn drain_schema_set(set: *mut ffi::ly_set, out: &mut Vec<SchemaAddr>) {
    if set.is_null() {
        return;
    }
    // SAFETY: a non-null set returned by libyang has `count` valid entries in `snodes`.
    unsafe {
        let count = (*set).count as usize;
        let nodes = (*set).__bindgen_anon_1.snodes;
        for i in 0..count {
            out.push(*nodes.add(i) as SchemaAddr);
        }
        ffi::ly_set_free(set, None);
    }
}

/// Whether `node` carries a `when` statement (its own, or one inherited from a `uses` or an
/// `augment`: libyang copies those onto every node they cover).
pub(crate) fn has_when(node: &SchemaNode<'_>) -> bool {
    // SAFETY: `raw` is a live compiled node of a context borrowed by `node`; `lysc_node_when`
    // returns null or a libyang sized array owned by the context.
    unsafe { sized_array_len(ffi::lysc_node_when(node.as_raw())) > 0 }
}

/// Collects the schema nodes read by the `when`, `must`, leafref and `unique` constraints
/// defined on `node`.
pub(crate) fn constraint_atoms(node: &SchemaNode<'_>) -> ConstraintAtoms {
    let raw = node.as_raw();
    let mut atoms = ConstraintAtoms::default();
    // SAFETY: `raw` is a live compiled node of a context borrowed by `node`; the accessors below
    // only read libyang-owned memory and the returned sets are freed by `drain_schema_set`.
    unsafe {
        let module = (*raw).module;
        let whens = ffi::lysc_node_when(raw);
        for i in 0..sized_array_len(whens) {
            let when = *whens.add(i);
            atoms.any = true;
            let mut set = std::ptr::null_mut();
            let rc = ffi::lys_find_expr_atoms(
                (*when).context,
                module,
                (*when).cond,
                (*when).prefixes,
                0,
                &mut set,
            );
            if rc == ffi::LY_ERR::LY_SUCCESS {
                drain_schema_set(set, &mut atoms.nodes);
            } else {
                atoms.unbounded = true;
            }
        }
        let musts = ffi::lysc_node_musts(raw);
        for i in 0..sized_array_len(musts) {
            let must = musts.add(i);
            atoms.any = true;
            let mut set = std::ptr::null_mut();
            let rc =
                ffi::lys_find_expr_atoms(raw, module, (*must).cond, (*must).prefixes, 0, &mut set);
            if rc == ffi::LY_ERR::LY_SUCCESS {
                drain_schema_set(set, &mut atoms.nodes);
            } else {
                atoms.unbounded = true;
            }
        }
        let nodetype = u32::from((*raw).nodetype);
        if nodetype == ffi::LYS_LEAF || nodetype == ffi::LYS_LEAFLIST {
            let mut set = std::ptr::null_mut();
            if ffi::lysc_node_lref_targets(raw, &mut set) == ffi::LY_ERR::LY_SUCCESS
                && !set.is_null()
            {
                if (*set).count > 0 {
                    atoms.any = true;
                }
                drain_schema_set(set, &mut atoms.nodes);
            }
            let ty = if nodetype == ffi::LYS_LEAF {
                (*(raw as *const ffi::lysc_node_leaf)).type_
            } else {
                (*(raw as *const ffi::lysc_node_leaflist)).type_
            };
            if type_has_instance_identifier(ty) {
                atoms.any = true;
                atoms.unbounded = true;
            }
        }
        if nodetype == ffi::LYS_LIST {
            let uniques = (*(raw as *const ffi::lysc_node_list)).uniques;
            for i in 0..sized_array_len(uniques) {
                let leaves = *uniques.add(i);
                atoms.any = true;
                atoms.unique = true;
                for j in 0..sized_array_len(leaves) {
                    atoms.nodes.push(*leaves.add(j) as SchemaAddr);
                }
            }
        }
    }
    atoms
}

/// Whether a type is, or contains through unions and leafrefs, an instance-identifier.
///
/// # Safety
/// `ty` must be null or a compiled type of a live context.
unsafe fn type_has_instance_identifier(ty: *const ffi::lysc_type) -> bool {
    if ty.is_null() {
        return false;
    }
    // SAFETY: see the function contract; union member arrays are libyang sized arrays.
    unsafe {
        match (*ty).basetype {
            ffi::LY_DATA_TYPE::LY_TYPE_INST => true,
            ffi::LY_DATA_TYPE::LY_TYPE_UNION => {
                let members = (*(ty as *const ffi::lysc_type_union)).types;
                (0..sized_array_len(members)).any(|i| type_has_instance_identifier(*members.add(i)))
            }
            ffi::LY_DATA_TYPE::LY_TYPE_LEAFREF => {
                type_has_instance_identifier((*(ty as *const ffi::lysc_type_leafref)).realtype)
            }
            _ => false,
        }
    }
}

/// The base types of a union leaf's members, in declaration order, with leafrefs resolved to
/// their targets' types. Empty for a node that is not a union leaf or leaf-list.
pub(crate) fn union_member_types(node: &SchemaNode<'_>) -> Vec<DataValueType> {
    let raw = node.as_raw();
    let mut out = Vec::new();
    // SAFETY: `raw` is a live compiled leaf or leaf-list; type pointers belong to the context.
    unsafe {
        let nodetype = u32::from((*raw).nodetype);
        let ty = if nodetype == ffi::LYS_LEAF {
            (*(raw as *const ffi::lysc_node_leaf)).type_
        } else if nodetype == ffi::LYS_LEAFLIST {
            (*(raw as *const ffi::lysc_node_leaflist)).type_
        } else {
            return out;
        };
        collect_union_members(ty, &mut out);
    }
    out
}

/// # Safety
/// `ty` must be null or a compiled type of a live context.
unsafe fn collect_union_members(ty: *const ffi::lysc_type, out: &mut Vec<DataValueType>) {
    if ty.is_null() {
        return;
    }
    // SAFETY: see the function contract.
    unsafe {
        match (*ty).basetype {
            ffi::LY_DATA_TYPE::LY_TYPE_UNION => {
                let members = (*(ty as *const ffi::lysc_type_union)).types;
                for i in 0..sized_array_len(members) {
                    let member = *members.add(i);
                    if (*member).basetype == ffi::LY_DATA_TYPE::LY_TYPE_UNION {
                        collect_union_members(member, out);
                    } else {
                        out.push(resolved_basetype(member));
                    }
                }
            }
            _ => out.push(resolved_basetype(ty)),
        }
    }
}

/// # Safety
/// `ty` must be a compiled type of a live context.
unsafe fn resolved_basetype(ty: *const ffi::lysc_type) -> DataValueType {
    // SAFETY: see the function contract.
    unsafe {
        let mut ty = ty;
        while (*ty).basetype == ffi::LY_DATA_TYPE::LY_TYPE_LEAFREF {
            let real = (*(ty as *const ffi::lysc_type_leafref)).realtype;
            if real.is_null() {
                break;
            }
            ty = real;
        }
        basetype_of((*ty).basetype)
    }
}

fn basetype_of(raw: ffi::LY_DATA_TYPE::Type) -> DataValueType {
    use ffi::LY_DATA_TYPE as T;
    match raw {
        T::LY_TYPE_BINARY => DataValueType::Binary,
        T::LY_TYPE_UINT8 => DataValueType::Uint8,
        T::LY_TYPE_UINT16 => DataValueType::Uint16,
        T::LY_TYPE_UINT32 => DataValueType::Uint32,
        T::LY_TYPE_UINT64 => DataValueType::Uint64,
        T::LY_TYPE_STRING => DataValueType::String,
        T::LY_TYPE_BITS => DataValueType::Bits,
        T::LY_TYPE_BOOL => DataValueType::Bool,
        T::LY_TYPE_DEC64 => DataValueType::Dec64,
        T::LY_TYPE_EMPTY => DataValueType::Empty,
        T::LY_TYPE_ENUM => DataValueType::Enum,
        T::LY_TYPE_IDENT => DataValueType::IdentityRef,
        T::LY_TYPE_INST => DataValueType::InstanceId,
        T::LY_TYPE_LEAFREF => DataValueType::LeafRef,
        T::LY_TYPE_UNION => DataValueType::Union,
        T::LY_TYPE_INT8 => DataValueType::Int8,
        T::LY_TYPE_INT16 => DataValueType::Int16,
        T::LY_TYPE_INT32 => DataValueType::Int32,
        T::LY_TYPE_INT64 => DataValueType::Int64,
        _ => DataValueType::Unknown,
    }
}

/// The base type a union value resolved to (the member libyang chose), or `None` when the node
/// is not a term node holding a union value.
pub(crate) fn union_value_type(node: &DataNodeRef<'_>) -> Option<DataValueType> {
    let raw = node.as_raw();
    // SAFETY: `raw` is a live data node of a tree borrowed by `node`; a term node's value and its
    // union subvalue are owned by that tree.
    unsafe {
        let schema = (*raw).schema;
        if schema.is_null() {
            return None;
        }
        let nodetype = u32::from((*schema).nodetype);
        if nodetype != ffi::LYS_LEAF && nodetype != ffi::LYS_LEAFLIST {
            return None;
        }
        let value = &(*(raw as *const ffi::lyd_node_term)).value;
        let mut realtype = value.realtype;
        if realtype.is_null() || (*realtype).basetype != ffi::LY_DATA_TYPE::LY_TYPE_UNION {
            return None;
        }
        let mut sub = value.__bindgen_anon_1.subvalue;
        loop {
            if sub.is_null() {
                return None;
            }
            realtype = (*sub).value.realtype;
            if realtype.is_null() {
                return None;
            }
            if (*realtype).basetype != ffi::LY_DATA_TYPE::LY_TYPE_UNION {
                return Some(resolved_basetype(realtype));
            }
            sub = (*sub).value.__bindgen_anon_1.subvalue;
        }
    }
}

/// Why a value was refused by [`canonical_value`].
#[derive(Debug)]
pub(crate) struct ValueRejected {
    /// libyang's explanation.
    pub(crate) message: String,
}

/// Checks `text` (JSON-format lexical value) against the type of the leaf or leaf-list at
/// `addr` (an address taken from `ctx`'s compiled schema) and returns its canonical form and the
/// base type it resolved to. Leafref and instance-identifier targets are not resolved.
pub(crate) fn canonical_value(
    ctx: &Context,
    addr: SchemaAddr,
    text: &str,
) -> Result<(String, DataValueType), ValueRejected> {
    let Ok(len) = u32::try_from(text.len()) else {
        return Err(ValueRejected { message: "value too long".into() });
    };
    let Ok(ctext) = CString::new(text) else {
        return Err(ValueRejected { message: "value contains a NUL byte".into() });
    };
    let raw = addr as *const ffi::lysc_node;
    let mut canonical: *const std::os::raw::c_char = std::ptr::null();
    let mut realtype: *const ffi::lysc_type = std::ptr::null();
    // SAFETY: `addr` was read from a compiled leaf or leaf-list of `ctx`, which the caller
    // borrows, so the node is alive; `ctext` outlives the call; the canonical string is a
    // dictionary entry that we copy and then release.
    unsafe {
        let rc = ffi::lyd_value_validate(
            raw,
            ctext.as_ptr(),
            len,
            std::ptr::null(),
            &mut realtype,
            &mut canonical,
        );
        if rc != ffi::LY_ERR::LY_SUCCESS && rc != ffi::LY_ERR::LY_EINCOMPLETE {
            let err = yang5::Error::new(ctx);
            return Err(ValueRejected {
                message: err.msg.unwrap_or_else(|| format!("invalid value \"{text}\"")),
            });
        }
        let base =
            if realtype.is_null() { DataValueType::String } else { resolved_basetype(realtype) };
        if canonical.is_null() {
            return Ok((text.to_owned(), base));
        }
        let out = CStr::from_ptr(canonical).to_string_lossy().into_owned();
        ffi::lydict_remove((*(*raw).module).ctx, canonical);
        Ok((out, base))
    }
}

/// Whether libyang created the node itself from a schema default (its `LYD_DEFAULT` flag), as
/// opposed to a value someone set, even one equal to the default.
pub(crate) fn is_implicit_default(node: &DataNodeRef<'_>) -> bool {
    let raw = node.as_raw();
    // SAFETY: `raw` is a live data node of a tree borrowed by `node`.
    unsafe { (*raw).flags & ffi::LYD_DEFAULT != 0 }
}

/// Validates a parsed operation tree (RPC input or output, or a notification) fully: mandatory
/// nodes, `when`, `must` and the rest. Parsing an operation does not validate it. References
/// into the datastore (leafrefs with `require-instance`) cannot be resolved here and fail.
pub(crate) fn validate_operation(
    ctx: &Context,
    tree: &yang5::data::DataTree<'_>,
    op: yang5::data::DataOperation,
) -> Result<(), yang5::Error> {
    let Some(node) = tree.reference() else {
        return Ok(());
    };
    // SAFETY: `node` is the top-level node of `tree`, alive for the call; libyang only reads and
    // annotates the operation subtree, and no diff is requested.
    let rc = unsafe {
        ffi::lyd_validate_op(node.as_raw(), std::ptr::null(), op as u32, std::ptr::null_mut())
    };
    if rc == ffi::LY_ERR::LY_SUCCESS { Ok(()) } else { Err(yang5::Error::new(ctx)) }
}
