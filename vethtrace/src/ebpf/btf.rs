//! Reads the running kernel's BTF: the struct layout the eBPF programs need
//! ([`Offsets`]) and which traced functions exist, with how many arguments.
//!
//! aya-ebpf emits no CO-RE relocations and aya's public `Btf` cannot give a
//! member's offset by name, so this module parses BTF itself. It handles the
//! parts the kernel's BTF uses: split BTF for modules (`/sys/kernel/btf/veth`
//! continues the type ids and string offsets of vmlinux), anonymous struct
//! and union members (their offsets add up), and the `kind_flag` encoding of
//! member offsets that packs a bitfield size into the top byte.
//!
//! The format is described in the kernel's Documentation/bpf/btf.rst: a
//! header, a type section, and a string section, all in the kernel's byte
//! order. Only little-endian BTF is accepted, as vethtrace runs on x86_64.

use std::{fs, io, path::PathBuf};

use vethtrace_common::Offsets;

/// Path of the kernel's own BTF (Linux 5.5+ with CONFIG_DEBUG_INFO_BTF).
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Path of the veth module's BTF while the module is loaded (Linux 5.11+
/// with CONFIG_DEBUG_INFO_BTF_MODULES). Kernels that build veth in describe
/// `veth_priv` in vmlinux instead.
pub const VETH_BTF: &str = "/sys/kernel/btf/veth";

/// `veth_priv.peer` when neither vmlinux nor a loaded veth module describes
/// `struct veth_priv`: `peer` has been its first member since veth appeared
/// in 2.6.24, up to 6.18 at least.
const VETH_PEER_FALLBACK: u32 = 0;
/// NETDEV_ALIGN. Before 6.12, `netdev_priv()` starts at
/// `sizeof(struct net_device)` rounded up to this.
const NETDEV_ALIGN: u32 = 32;

const MAGIC: u16 = 0xeb9f;
const HEADER_MIN_LEN: usize = 24;

const KIND_INT: u8 = 1;
const KIND_PTR: u8 = 2;
const KIND_ARRAY: u8 = 3;
const KIND_STRUCT: u8 = 4;
const KIND_UNION: u8 = 5;
const KIND_ENUM: u8 = 6;
const KIND_FWD: u8 = 7;
const KIND_TYPEDEF: u8 = 8;
const KIND_VOLATILE: u8 = 9;
const KIND_CONST: u8 = 10;
const KIND_RESTRICT: u8 = 11;
const KIND_FUNC: u8 = 12;
const KIND_FUNC_PROTO: u8 = 13;
const KIND_VAR: u8 = 14;
const KIND_DATASEC: u8 = 15;
const KIND_FLOAT: u8 = 16;
const KIND_DECL_TAG: u8 = 17;
const KIND_TYPE_TAG: u8 = 18;
const KIND_ENUM64: u8 = 19;

/// An error reading or querying BTF.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The data is not BTF this reader understands.
    #[error("malformed btf: {0}")]
    Malformed(String),
    /// No struct of that name (with members) exists.
    #[error("no struct {0} in btf")]
    MissingStruct(String),
    /// The struct has no member of that name, directly or in an anonymous
    /// struct or union.
    #[error("no member {member} in struct {ty}")]
    MissingMember {
        /// The struct (or union) searched.
        ty: String,
        /// The member asked for.
        member: String,
    },
    /// The member is a bitfield or not byte-aligned, so it has no byte
    /// offset.
    #[error("member {member} of struct {ty} is a bitfield (bit offset {bit_offset})")]
    Bitfield {
        /// The struct (or union) holding the member.
        ty: String,
        /// The member.
        member: String,
        /// Its offset in bits.
        bit_offset: u32,
    },
}

/// One member of a struct or union, with its offset already decoded.
#[derive(Clone, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

/// Data of a type beyond the common `btf_type` fields, for the kinds this
/// reader looks into.
#[derive(Clone, Debug)]
enum Detail {
    None,
    Members(Vec<Member>),
    Array { elem_type: u32, nelems: u32 },
    Params(usize),
}

/// One type: its kind, name, `size` or `type` field, and details.
#[derive(Clone, Debug)]
struct Type {
    kind: u8,
    name_off: u32,
    size_or_type: u32,
    detail: Detail,
}

/// Parsed BTF: vmlinux's, optionally extended with one module's split BTF.
#[derive(Debug)]
pub struct Btf {
    /// Indexed by type id; id 0 is `void`.
    types: Vec<Type>,
    /// The string sections, base first, so that a split BTF's offsets (which
    /// start at the base's length) index this directly.
    strings: Vec<u8>,
}

impl Btf {
    /// Reads and parses the kernel's own BTF from [`VMLINUX_BTF`].
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::parse(&read(VMLINUX_BTF)?)
    }

    /// Parses standalone (base) BTF, such as vmlinux's.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let mut btf = Self {
            types: vec![Type {
                kind: 0,
                name_off: 0,
                size_or_type: 0,
                detail: Detail::None,
            }],
            strings: Vec::new(),
        };
        btf.append(data, true)?;
        Ok(btf)
    }

    /// Adds a module's split BTF, whose type ids and string offsets continue
    /// those already parsed.
    pub fn add_split(&mut self, data: &[u8]) -> Result<(), BtfError> {
        self.append(data, false)
    }

    fn append(&mut self, data: &[u8], base: bool) -> Result<(), BtfError> {
        let mut header = Cursor::new(data, 0);
        let magic = header.u16()?;
        if magic != MAGIC {
            return Err(malformed(format!(
                "magic {magic:#06x}, want {MAGIC:#06x} (only little-endian btf is supported)"
            )));
        }
        let _version = header.u8()?;
        let _flags = header.u8()?;
        let hdr_len = header.u32()? as usize;
        if hdr_len < HEADER_MIN_LEN {
            return Err(malformed(format!("header length {hdr_len}")));
        }
        let type_off = header.u32()? as usize;
        let type_len = header.u32()? as usize;
        let str_off = header.u32()? as usize;
        let str_len = header.u32()? as usize;
        let types = section(data, hdr_len, type_off, type_len, "type")?;
        let strings = section(data, hdr_len, str_off, str_len, "string")?;
        if base && strings.first() != Some(&0) {
            return Err(malformed(
                "string section does not start with an empty string",
            ));
        }
        // On an error, leave the BTF as it was before this call.
        let (type_count, string_len) = (self.types.len(), self.strings.len());
        self.strings.extend_from_slice(strings);
        self.parse_types(types).inspect_err(|_| {
            self.types.truncate(type_count);
            self.strings.truncate(string_len);
        })
    }

    fn parse_types(&mut self, data: &[u8]) -> Result<(), BtfError> {
        let mut cursor = Cursor::new(data, 0);
        while !cursor.at_end() {
            let start = cursor.position;
            let name_off = cursor.u32()?;
            let info = cursor.u32()?;
            let size_or_type = cursor.u32()?;
            let vlen = (info & 0xffff) as usize;
            let kind = ((info >> 24) & 0x1f) as u8;
            let kind_flag = info >> 31 == 1;
            let detail = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                    cursor.skip(4)?;
                    Detail::None
                }
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => Detail::None,
                KIND_ARRAY => {
                    let elem_type = cursor.u32()?;
                    let _index_type = cursor.u32()?;
                    let nelems = cursor.u32()?;
                    Detail::Array { elem_type, nelems }
                }
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let name_off = cursor.u32()?;
                        let type_id = cursor.u32()?;
                        let offset = cursor.u32()?;
                        let (bit_offset, bitfield_size) = if kind_flag {
                            (offset & 0xff_ffff, offset >> 24)
                        } else {
                            (offset, 0)
                        };
                        members.push(Member {
                            name_off,
                            type_id,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    Detail::Members(members)
                }
                KIND_ENUM | KIND_FUNC_PROTO => {
                    cursor.skip(8 * vlen)?;
                    if kind == KIND_FUNC_PROTO {
                        Detail::Params(vlen)
                    } else {
                        Detail::None
                    }
                }
                KIND_DATASEC | KIND_ENUM64 => {
                    cursor.skip(12 * vlen)?;
                    Detail::None
                }
                _ => {
                    return Err(malformed(format!(
                        "unknown kind {kind} in type {} at byte {start} of the type section",
                        self.types.len()
                    )));
                }
            };
            self.types.push(Type {
                kind,
                name_off,
                size_or_type,
                detail,
            });
        }
        Ok(())
    }

    /// Returns the name at `offset` in the string section, or "" where the
    /// offset is out of range.
    fn name(&self, offset: u32) -> &str {
        let tail = self.strings.get(offset as usize..).unwrap_or_default();
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..end]).unwrap_or_default()
    }

    fn get(&self, id: u32) -> Result<&Type, BtfError> {
        self.types
            .get(id as usize)
            .ok_or_else(|| malformed(format!("type id {id} out of range")))
    }

    /// Finds the first type of `kind` named `name`. For structs it skips
    /// those without members, so that forward declarations do not match.
    fn find(&self, kind: u8, name: &str) -> Option<u32> {
        self.types
            .iter()
            .position(|ty| {
                ty.kind == kind
                    && self.name(ty.name_off) == name
                    && !matches!(&ty.detail, Detail::Members(members) if members.is_empty())
            })
            .map(|id| id as u32)
    }

    /// Follows typedefs and type modifiers to the type they name.
    fn resolve(&self, mut id: u32) -> Result<u32, BtfError> {
        // Bounded, so that a malformed cycle cannot hang the reader.
        for _ in 0..32 {
            let ty = self.get(id)?;
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.size_or_type;
                }
                _ => return Ok(id),
            }
        }
        Err(malformed(format!("type chain from id {id} too long")))
    }

    /// Size in bytes of type `id`.
    fn size_of(&self, id: u32) -> Result<u32, BtfError> {
        let id = self.resolve(id)?;
        let ty = self.get(id)?;
        match (ty.kind, &ty.detail) {
            (KIND_PTR, _) => Ok(8),
            (_, Detail::Array { elem_type, nelems }) => Ok(self.size_of(*elem_type)? * nelems),
            (KIND_INT | KIND_ENUM | KIND_ENUM64 | KIND_STRUCT | KIND_UNION | KIND_FLOAT, _) => {
                Ok(ty.size_or_type)
            }
            (kind, _) => Err(malformed(format!(
                "type id {id} of kind {kind} has no size"
            ))),
        }
    }

    /// Size in bytes of `struct name`.
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        let id = self
            .find(KIND_STRUCT, name)
            .ok_or_else(|| BtfError::MissingStruct(name.to_owned()))?;
        self.size_of(id)
    }

    /// Byte offset of `path` in `struct name`: `["ns", "inum"]` is
    /// `offsetof(struct net, ns.inum)`. Members of anonymous structs and
    /// unions are found as the compiler finds them.
    pub fn member_offset(&self, name: &str, path: &[&str]) -> Result<u32, BtfError> {
        self.member(name, path).map(|(offset, _)| offset)
    }

    /// Byte offset and type id of `path` in `struct name`.
    fn member(&self, name: &str, path: &[&str]) -> Result<(u32, u32), BtfError> {
        let mut id = self
            .find(KIND_STRUCT, name)
            .ok_or_else(|| BtfError::MissingStruct(name.to_owned()))?;
        let mut ty_name = name.to_owned();
        let mut total_bits = 0;
        for member in path {
            let (bits, member_id) =
                self.find_member(id, member)?
                    .ok_or_else(|| BtfError::MissingMember {
                        ty: ty_name.clone(),
                        member: (*member).to_owned(),
                    })?;
            if bits.bitfield_size != 0 || bits.bit_offset % 8 != 0 {
                return Err(BtfError::Bitfield {
                    ty: ty_name,
                    member: (*member).to_owned(),
                    bit_offset: bits.bit_offset,
                });
            }
            total_bits += bits.bit_offset;
            id = self.resolve(member_id)?;
            ty_name = (*member).to_owned();
        }
        Ok((total_bits / 8, id))
    }

    /// Finds `member` in the struct or union `id`, descending into anonymous
    /// members. Returns its position (offset relative to `id`) and type.
    fn find_member(&self, id: u32, member: &str) -> Result<Option<(Member, u32)>, BtfError> {
        let id = self.resolve(id)?;
        let Detail::Members(members) = &self.get(id)?.detail else {
            return Ok(None);
        };
        for candidate in members {
            if candidate.name_off != 0 && self.name(candidate.name_off) == member {
                return Ok(Some((candidate.clone(), candidate.type_id)));
            }
        }
        for candidate in members.iter().filter(|m| m.name_off == 0) {
            if let Some((mut inner, type_id)) = self.find_member(candidate.type_id, member)? {
                inner.bit_offset += candidate.bit_offset;
                return Ok(Some((inner, type_id)));
            }
        }
        Ok(None)
    }

    /// Number of arguments of the kernel function `name`, or `None` when BTF
    /// does not list it (absent, or inlined everywhere).
    pub fn function_arity(&self, name: &str) -> Option<usize> {
        let func = self.get(self.find(KIND_FUNC, name)?).ok()?;
        match self.get(func.size_or_type).ok()?.detail {
            Detail::Params(count) => Some(count),
            _ => None,
        }
    }
}

/// The running kernel's BTF: vmlinux, plus the veth module's when loaded.
#[derive(Debug)]
pub struct KernelBtf {
    btf: Btf,
    veth_module: bool,
}

impl KernelBtf {
    /// Reads [`VMLINUX_BTF`] and, if present, [`VETH_BTF`].
    pub fn load() -> Result<Self, BtfError> {
        let mut btf = Btf::from_sys_fs()?;
        let veth_module = match fs::read(VETH_BTF) {
            Ok(data) => {
                btf.add_split(&data)?;
                true
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => false,
            Err(source) => {
                return Err(BtfError::Read {
                    path: VETH_BTF.into(),
                    source,
                });
            }
        };
        Ok(Self { btf, veth_module })
    }

    /// Wraps already parsed BTF (for tests and for BTF from elsewhere).
    pub fn from_btf(btf: Btf, veth_module: bool) -> Self {
        Self { btf, veth_module }
    }

    /// Returns the parsed BTF.
    pub fn btf(&self) -> &Btf {
        &self.btf
    }

    /// Checks whether the veth module's BTF was read.
    pub fn veth_module(&self) -> bool {
        self.veth_module
    }

    /// Number of arguments of kernel function `name`, `None` when absent.
    pub fn function_arity(&self, name: &str) -> Option<usize> {
        self.btf.function_arity(name)
    }

    /// Computes the offsets the eBPF programs read kernel structs with.
    pub fn offsets(&self) -> Result<Offsets, BtfError> {
        let btf = &self.btf;
        let dev = |path: &[&str]| btf.member_offset("net_device", path);
        // net_cookie is a u64 on 6.1 and later. Debian's 5.10 has an
        // atomic64_t of the same size that stays 0 until something requests
        // the cookie. Kernels without the member get u32::MAX.
        let net_cookie = match btf.member("net", &["net_cookie"]) {
            Ok((offset, id)) if btf.size_of(id)? == 8 => offset,
            Ok(_) | Err(BtfError::MissingMember { .. }) => u32::MAX,
            Err(error) => return Err(error),
        };
        let veth_peer = match btf.member_offset("veth_priv", &["peer"]) {
            Ok(offset) => offset,
            Err(BtfError::MissingStruct(_)) => VETH_PEER_FALLBACK,
            Err(error) => return Err(error),
        };
        // 6.12 turned the private area into a flexible array member
        // `net_device.priv`; before, it followed the aligned struct.
        let dev_priv = match dev(&["priv"]) {
            Ok(offset) => offset,
            Err(BtfError::MissingMember { .. }) => btf
                .struct_size("net_device")?
                .next_multiple_of(NETDEV_ALIGN),
            Err(error) => return Err(error),
        };
        Ok(Offsets {
            dev_ifindex: dev(&["ifindex"])?,
            dev_name: dev(&["name"])?,
            dev_nd_net: dev(&["nd_net", "net"])?,
            dev_rtnl_link_ops: dev(&["rtnl_link_ops"])?,
            link_ops_kind: btf.member_offset("rtnl_link_ops", &["kind"])?,
            net_cookie,
            net_inum: btf.member_offset("net", &["ns", "inum"])?,
            veth_peer,
            dev_priv,
            _pad: 0,
        })
    }
}

fn read(path: &str) -> Result<Vec<u8>, BtfError> {
    fs::read(path).map_err(|source| BtfError::Read {
        path: path.into(),
        source,
    })
}

fn malformed(what: impl Into<String>) -> BtfError {
    BtfError::Malformed(what.into())
}

/// Returns the bytes of one section, whose `offset` and `len` count from the
/// end of the header.
fn section<'a>(
    data: &'a [u8],
    hdr_len: usize,
    offset: usize,
    len: usize,
    what: &str,
) -> Result<&'a [u8], BtfError> {
    let start = hdr_len.checked_add(offset);
    let end = start.and_then(|start| start.checked_add(len));
    match (start, end) {
        (Some(start), Some(end)) if end <= data.len() => Ok(&data[start..end]),
        _ => Err(malformed(format!(
            "{what} section at {offset}+{len} past the end ({} bytes)",
            data.len()
        ))),
    }
}

/// Reads little-endian integers from a byte slice.
struct Cursor<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8], position: usize) -> Self {
        Self { data, position }
    }

    fn at_end(&self) -> bool {
        self.position >= self.data.len()
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], BtfError> {
        let bytes = self
            .data
            .get(self.position..self.position + N)
            .ok_or_else(|| malformed(format!("truncated at byte {}", self.position)))?;
        self.position += N;
        Ok(bytes.try_into().expect("slice of N bytes"))
    }

    fn skip(&mut self, len: usize) -> Result<(), BtfError> {
        if self.position + len > self.data.len() {
            return Err(malformed(format!("truncated at byte {}", self.position)));
        }
        self.position += len;
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, BtfError> {
        self.take::<1>().map(|[byte]| byte)
    }

    fn u16(&mut self) -> Result<u16, BtfError> {
        self.take().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, BtfError> {
        self.take().map(u32::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds BTF from `(name, info, size_or_type, extra words)` entries.
    fn build(strings: &[u8], types: &[(u32, u32, u32, &[u32])]) -> Vec<u8> {
        let mut type_section = Vec::new();
        for (name_off, info, size_or_type, extra) in types {
            for word in [*name_off, *info, *size_or_type].iter().chain(extra.iter()) {
                type_section.extend_from_slice(&word.to_le_bytes());
            }
        }
        let mut data = Vec::new();
        data.extend_from_slice(&MAGIC.to_le_bytes());
        data.extend_from_slice(&[1, 0]);
        for word in [24, 0, type_section.len() as u32, type_section.len() as u32] {
            data.extend_from_slice(&u32::to_le_bytes(word));
        }
        data.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        data.extend_from_slice(&type_section);
        data.extend_from_slice(strings);
        data
    }

    fn info(kind: u8, vlen: u32, kind_flag: bool) -> u32 {
        (u32::from(kind_flag) << 31) | (u32::from(kind) << 24) | vlen
    }

    /// A base with `int` (id 1) and `struct outer` (id 3) whose second member
    /// is an anonymous union (id 2) holding `inner` at byte 4 of the union,
    /// plus a split BTF with `struct priv { int *peer; }`.
    #[test]
    fn anonymous_members_and_split_btf() {
        // Offsets: 1 "int", 5 "outer", 11 "first", 17 "inner", 23 "flags";
        // 29 bytes in all.
        let strings = b"\0int\0outer\0first\0inner\0flags\0";
        let base = build(
            strings,
            &[
                (1, info(KIND_INT, 0, false), 4, &[32]),
                (
                    0,
                    info(KIND_UNION, 2, true),
                    8,
                    &[17, 1, 32, 23, 1, (3 << 24) | 1],
                ),
                (5, info(KIND_STRUCT, 2, false), 24, &[11, 1, 0, 0, 2, 64]),
            ],
        );
        let mut btf = Btf::parse(&base).unwrap();
        assert_eq!(btf.member_offset("outer", &["first"]).unwrap(), 0);
        assert_eq!(btf.member_offset("outer", &["inner"]).unwrap(), 12);
        assert!(matches!(
            btf.member_offset("outer", &["flags"]),
            Err(BtfError::Bitfield { bit_offset: 65, .. })
        ));
        assert!(matches!(
            btf.member_offset("outer", &["missing"]),
            Err(BtfError::MissingMember { .. })
        ));
        assert_eq!(btf.struct_size("outer").unwrap(), 24);

        // Split strings continue at the base's length: 29 "priv", 34 "peer".
        let split = build(
            b"priv\0peer\0",
            &[
                (0, info(KIND_PTR, 0, false), 1, &[]),
                (29, info(KIND_STRUCT, 1, false), 8, &[34, 4, 0]),
            ],
        );
        btf.add_split(&split).unwrap();
        assert_eq!(btf.member_offset("priv", &["peer"]).unwrap(), 0);
        assert_eq!(btf.struct_size("priv").unwrap(), 8);
    }

    #[test]
    fn rejects_big_endian_and_truncated_btf() {
        let mut data = build(b"\0", &[]);
        data[..2].copy_from_slice(&MAGIC.to_be_bytes());
        assert!(matches!(Btf::parse(&data), Err(BtfError::Malformed(_))));
        let data = build(b"\0int\0", &[(1, info(KIND_INT, 0, false), 4, &[32])]);
        assert!(matches!(
            Btf::parse(&data[..data.len() - 8]),
            Err(BtfError::Malformed(_))
        ));
    }

    /// Offsets on the kernel these tests run on. The expected values are
    /// those of the 6.18 development hosts. On another kernel the test prints
    /// why it skips the comparison and checks only that every offset was
    /// found.
    #[test]
    fn reads_offsets_from_running_kernel() {
        let btf = match KernelBtf::load() {
            Ok(btf) => btf,
            Err(error) => {
                eprintln!("skipped: no kernel btf: {error}");
                return;
            }
        };
        let offsets = btf.offsets().unwrap();
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        if !release.starts_with("6.18.") {
            eprintln!("skipped comparison: expected values are for 6.18, kernel is {release}");
            return;
        }
        assert_eq!(offsets.dev_ifindex, 224);
        assert_eq!(offsets.dev_nd_net, 264);
        assert_eq!(offsets.dev_name, 280);
        assert_eq!(offsets.net_inum, 176);
        assert_eq!(offsets.net_cookie, 4096);
        assert_eq!(offsets.veth_peer, 0);
        assert_eq!(offsets.dev_priv, 2496);
    }

    #[test]
    fn finds_traced_functions_in_running_kernel() {
        let btf = match Btf::from_sys_fs() {
            Ok(btf) => btf,
            Err(error) => {
                eprintln!("skipped: no kernel btf: {error}");
                return;
            }
        };
        assert_eq!(btf.function_arity("list_netdevice"), Some(1));
        assert!(btf.function_arity("rtnl_configure_link").is_some());
        assert_eq!(btf.function_arity("dev_change_name"), Some(2));
        assert_eq!(btf.function_arity("vethtrace_no_such_function"), None);
    }
}
