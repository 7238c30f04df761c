//! A reader for llama.cpp's GGUF files (versions 2 and 3): header, metadata table, tensor
//! infos, aligned tensor data, and dequantisation of F32, F16, BF16, Q8_0, Q4_0 and Q4_1 tensors
//! to f32. [`GgufStore`] serves the tensors under Hugging Face names, undoing the row permutation
//! llama.cpp's converter applies to the query and key projections.
//!
//! Format reference: ggml `docs/gguf.md` and `ggml-quants.c` (block layouts).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use super::{FloatKind, RawTensor, TensorStore, decode_floats, map_file};
use crate::config::LlamaConfig;
use crate::error::{EngineError, Result};
use crate::names::{LayerParam, WeightId};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// uint8
    U8(u8),
    /// int8
    I8(i8),
    /// uint16
    U16(u16),
    /// int16
    I16(i16),
    /// uint32
    U32(u32),
    /// int32
    I32(i32),
    /// float32
    F32(f32),
    /// bool
    Bool(bool),
    /// UTF-8 string
    Str(String),
    /// Homogeneous array
    Array(Vec<GgufValue>),
    /// uint64
    U64(u64),
    /// int64
    I64(i64),
    /// float64
    F64(f64),
}

impl GgufValue {
    /// Any non-negative integer value as u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any numeric value as f64. An f32 is read through its shortest decimal form, so a stored
    /// `1e-5f32` becomes `1e-5`, not `9.9999997e-6`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => v.to_string().parse().ok(),
            GgufValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// A string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// An array value.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Tensor encodings (ggml's `ggml_type` numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 0
    F32,
    /// 1
    F16,
    /// 2: blocks of 32, `f16 d; u8 qs[16]`, value = d * (q - 8).
    Q4_0,
    /// 3: blocks of 32, `f16 d, m; u8 qs[16]`, value = d * q + m.
    Q4_1,
    /// 8: blocks of 32, `f16 d; i8 qs[32]`, value = d * q.
    Q8_0,
    /// 30
    Bf16,
    /// Any other type (K-quants, ...): listed but not dequantised.
    Other(u32),
}

impl GgmlType {
    fn from_u32(v: u32) -> Self {
        match v {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            30 => GgmlType::Bf16,
            other => GgmlType::Other(other),
        }
    }

    /// (values per block, bytes per block), or `None` for unsupported types.
    pub fn block(self) -> Option<(usize, usize)> {
        match self {
            GgmlType::F32 => Some((1, 4)),
            GgmlType::F16 | GgmlType::Bf16 => Some((1, 2)),
            GgmlType::Q4_0 => Some((32, 18)),
            GgmlType::Q4_1 => Some((32, 20)),
            GgmlType::Q8_0 => Some((32, 34)),
            GgmlType::Other(_) => None,
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgmlType::Other(v) => write!(f, "ggml type {v}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    /// llama.cpp name, e.g. `blk.0.ffn_down.weight`.
    pub name: String,
    /// Dimensions as GGUF lists them: innermost first.
    pub dims: Vec<u64>,
    /// Encoding.
    pub ggml_type: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    /// Row-major (PyTorch) shape: GGUF's dims reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of values.
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }
}

/// An open GGUF file: metadata parsed, tensor data memory-mapped.
pub struct GgufFile {
    path: PathBuf,
    map: memmap2::Mmap,
    /// Format version (2 or 3).
    pub version: u32,
    /// All key/value metadata.
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensor infos in file order.
    pub tensors: Vec<GgufTensorInfo>,
    index: HashMap<String, usize>,
    data_start: usize,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, message: String) -> EngineError {
        EngineError::format(
            self.path,
            "GGUF",
            format!("{message} (at byte {})", self.pos),
        )
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let bytes = &self.buf[self.pos..end];
                self.pos = end;
                Ok(bytes)
            }
            None => Err(self.err(format!("file ends while reading {n} bytes"))),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn len(&mut self, what: &str) -> Result<usize> {
        let n = self.u64()?;
        // Nothing in a file can be longer than the file.
        if n > self.buf.len() as u64 {
            return Err(self.err(format!("{what} length {n} exceeds the file size")));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String> {
        let n = self.len("string")?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err("string is not UTF-8".into()))
    }

    fn value(&mut self, kind: u32, depth: usize) -> Result<GgufValue> {
        Ok(match kind {
            0 => GgufValue::U8(self.array::<1>()?[0]),
            1 => GgufValue::I8(self.array::<1>()?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.array()?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array()?)),
            4 => GgufValue::U32(self.u32()?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array()?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array()?)),
            7 => GgufValue::Bool(self.array::<1>()?[0] != 0),
            8 => GgufValue::Str(self.string()?),
            9 => {
                if depth > 4 {
                    return Err(self.err("arrays nested too deeply".into()));
                }
                let item_kind = self.u32()?;
                let n = self.len("array")?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(item_kind, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array()?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(self.err(format!("unknown metadata value type {other}"))),
        })
    }
}

impl GgufFile {
    /// Opens and parses a GGUF file (tensor data stays mapped, not read).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(EngineError::MissingFile {
                path: path.to_path_buf(),
                what: "GGUF model",
            });
        }
        let map = map_file(path)?;
        let (version, metadata, tensors, data_start) = {
            let mut c = Cursor {
                buf: &map,
                pos: 0,
                path,
            };
            let magic = c
                .take(4)
                .map_err(|_| c.err("file too short for a GGUF header".into()))?;
            if magic != MAGIC {
                return Err(EngineError::format(
                    path,
                    "GGUF",
                    format!("bad magic {magic:?}, expected \"GGUF\""),
                ));
            }
            let version = c.u32()?;
            if !(2..=3).contains(&version) {
                return Err(c.err(format!("unsupported GGUF version {version} (need 2 or 3)")));
            }
            let n_tensors = c.len("tensor count")?;
            let n_kv = c.len("metadata count")?;
            let mut metadata = BTreeMap::new();
            for _ in 0..n_kv {
                let key = c.string()?;
                let kind = c.u32()?;
                let value = c.value(kind, 0)?;
                metadata.insert(key, value);
            }
            let mut tensors = Vec::with_capacity(n_tensors);
            for _ in 0..n_tensors {
                let name = c.string()?;
                let n_dims = c.u32()? as usize;
                if n_dims > 4 {
                    return Err(c.err(format!("tensor `{name}` has {n_dims} dimensions")));
                }
                let dims = (0..n_dims).map(|_| c.u64()).collect::<Result<Vec<_>>>()?;
                let ggml_type = GgmlType::from_u32(c.u32()?);
                let offset = c.u64()?;
                tensors.push(GgufTensorInfo {
                    name,
                    dims,
                    ggml_type,
                    offset,
                });
            }
            let alignment = metadata
                .get("general.alignment")
                .and_then(GgufValue::as_u64)
                .unwrap_or(DEFAULT_ALIGNMENT)
                .max(1);
            let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
            (version, metadata, tensors, data_start as usize)
        };
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let file = GgufFile {
            path: path.to_path_buf(),
            map,
            version,
            metadata,
            tensors,
            index,
            data_start,
        };
        for info in &file.tensors {
            file.tensor_bytes(info)?;
        }
        Ok(file)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// A string metadata value by key.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(GgufValue::as_str)
    }

    /// A tensor's info by llama.cpp name.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    fn tensor_bytes(&self, info: &GgufTensorInfo) -> Result<&[u8]> {
        let n = info.n_elements();
        let (block, bytes) = info
            .ggml_type
            .block()
            .ok_or_else(|| EngineError::TensorDtype {
                path: self.path.clone(),
                tensor: info.name.clone(),
                dtype: info.ggml_type.to_string(),
            })?;
        if !n.is_multiple_of(block) {
            return Err(EngineError::format(
                &self.path,
                "GGUF",
                format!(
                    "tensor `{}` has {n} values, not a multiple of its block {block}",
                    info.name
                ),
            ));
        }
        let len = n / block * bytes;
        let start = self.data_start as u64 + info.offset;
        let end = start + len as u64;
        if end > self.map.len() as u64 {
            return Err(EngineError::format(
                &self.path,
                "GGUF",
                format!(
                    "tensor `{}` data [{start}, {end}) runs past the end of the file ({} bytes)",
                    info.name,
                    self.map.len()
                ),
            ));
        }
        Ok(&self.map[start as usize..end as usize])
    }

    /// A tensor dequantised to f32 in row-major order, or `None` if the file lacks it.
    pub fn dequantize(&self, name: &str) -> Result<Option<RawTensor>> {
        let Some(info) = self.tensor_info(name) else {
            return Ok(None);
        };
        let bytes = self.tensor_bytes(info)?;
        let data = dequantize(info.ggml_type, bytes).ok_or_else(|| EngineError::TensorDtype {
            path: self.path.clone(),
            tensor: info.name.clone(),
            dtype: info.ggml_type.to_string(),
        })?;
        Ok(Some(RawTensor {
            shape: info.shape(),
            data,
        }))
    }

    /// `general.name`, when present.
    pub fn model_name(&self) -> Option<&str> {
        self.get_str("general.name")
    }

    /// The decoder's hyperparameters from `{arch}.*` metadata.
    pub fn llama_config(&self) -> Result<LlamaConfig> {
        let field_err = |field: &str, message: &str| EngineError::Config {
            path: self.path.clone(),
            field: field.to_string(),
            message: message.to_string(),
        };
        let arch = self
            .get_str("general.architecture")
            .ok_or_else(|| field_err("general.architecture", "missing"))?;
        if arch != "llama" && arch != "mistral" {
            return Err(EngineError::UnsupportedModel {
                path: self.path.clone(),
                model_type: arch.to_string(),
            });
        }
        let int = |key: &str| -> Result<Option<usize>> {
            let full = format!("{arch}.{key}");
            match self.get(&full) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(|v| Some(v as usize))
                    .ok_or_else(|| field_err(&full, "is not a non-negative integer")),
            }
        };
        let required = |key: &str| -> Result<usize> {
            int(key)?.ok_or_else(|| field_err(&format!("{arch}.{key}"), "missing"))
        };
        let float = |key: &str| {
            self.get(&format!("{arch}.{key}"))
                .and_then(GgufValue::as_f64)
        };

        let d_model = required("embedding_length")?;
        let n_heads = required("attention.head_count")?;
        let vocab_size = match int("vocab_size")? {
            Some(v) => v,
            None => match self
                .get("tokenizer.ggml.tokens")
                .and_then(GgufValue::as_array)
            {
                Some(tokens) => tokens.len(),
                None => self
                    .tensor_info("token_embd.weight")
                    .map(|t| t.shape()[0])
                    .ok_or_else(|| field_err(&format!("{arch}.vocab_size"), "missing"))?,
            },
        };
        let head_dim = match int("attention.key_length")?.or(int("rope.dimension_count")?) {
            Some(d) => d,
            None if n_heads > 0 => d_model / n_heads,
            None => {
                return Err(field_err(
                    &format!("{arch}.attention.head_count"),
                    "is zero",
                ));
            }
        };
        let rope_linear_factor = match self.get_str(&format!("{arch}.rope.scaling.type")) {
            None | Some("none") => 1.0,
            Some("linear") => float("rope.scaling.factor").unwrap_or(1.0),
            Some(other) => {
                return Err(field_err(
                    &format!("{arch}.rope.scaling.type"),
                    &format!("`{other}` is not supported (only linear)"),
                ));
            }
        };
        let config = LlamaConfig::new(
            vocab_size,
            d_model,
            required("feed_forward_length")?,
            required("block_count")?,
            n_heads,
            int("attention.head_count_kv")?.unwrap_or(n_heads),
            head_dim,
            int("context_length")?.unwrap_or(2048),
        )
        .with_rms_norm_eps(float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5))
        .with_rope_theta(float("rope.freq_base").unwrap_or(10000.0))
        .with_rope_linear_factor(rope_linear_factor)
        .with_tie_embeddings(self.tensor_info("output.weight").is_none());
        config.validate(&self.path)?;
        Ok(config)
    }
}

/// Dequantises a whole tensor's bytes; `None` for unsupported types.
pub fn dequantize(kind: GgmlType, bytes: &[u8]) -> Option<Vec<f32>> {
    let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    Some(match kind {
        GgmlType::F32 => decode_floats(bytes, FloatKind::F32),
        GgmlType::F16 => decode_floats(bytes, FloatKind::F16),
        GgmlType::Bf16 => decode_floats(bytes, FloatKind::Bf16),
        GgmlType::Q8_0 => {
            let mut out = Vec::with_capacity(bytes.len() / 34 * 32);
            for block in bytes.chunks_exact(34) {
                let d = f16(&block[0..2]);
                out.extend(block[2..].iter().map(|&q| d * (q as i8) as f32));
            }
            out
        }
        GgmlType::Q4_0 => {
            let mut out = vec![0.0; bytes.len() / 18 * 32];
            for (block, dst) in bytes.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
                let d = f16(&block[0..2]);
                for (j, &q) in block[2..].iter().enumerate() {
                    dst[j] = d * ((q & 0x0F) as i32 - 8) as f32;
                    dst[j + 16] = d * ((q >> 4) as i32 - 8) as f32;
                }
            }
            out
        }
        GgmlType::Q4_1 => {
            let mut out = vec![0.0; bytes.len() / 20 * 32];
            for (block, dst) in bytes.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
                let d = f16(&block[0..2]);
                let m = f16(&block[2..4]);
                for (j, &q) in block[4..].iter().enumerate() {
                    dst[j] = d * (q & 0x0F) as f32 + m;
                    dst[j + 16] = d * (q >> 4) as f32 + m;
                }
            }
            out
        }
        GgmlType::Other(_) => return None,
    })
}

/// Undoes llama.cpp's Q/K row permutation: within each head, GGUF row `2i + j` holds HF row
/// `j * head_dim / 2 + i` (llama.cpp interleaves the two rotary halves).
pub fn unpermute_rows(data: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    let rows = data.len() / cols;
    let head_dim = rows / n_heads;
    let half = head_dim / 2;
    let mut out = vec![0.0; data.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * head_dim + 2 * i + j) * cols;
                let dst = (h * head_dim + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    out
}

/// A GGUF file served as a [`TensorStore`] under HF names and layouts.
#[derive(Debug)]
pub struct GgufStore<'a> {
    file: &'a GgufFile,
    n_heads: usize,
    n_kv_heads: usize,
}

impl<'a> GgufStore<'a> {
    /// Serves `file`'s tensors for a model with `config`'s head counts.
    pub fn new(file: &'a GgufFile, config: &LlamaConfig) -> Self {
        Self {
            file,
            n_heads: config.n_heads,
            n_kv_heads: config.n_kv_heads,
        }
    }
}

impl TensorStore for GgufStore<'_> {
    fn path(&self) -> &Path {
        &self.file.path
    }

    fn load(&self, id: WeightId) -> Result<Option<RawTensor>> {
        let Some(mut raw) = self.file.dequantize(&id.gguf_name())? else {
            return Ok(None);
        };
        let heads = match id {
            WeightId::Layer {
                param: LayerParam::QProj,
                ..
            } => Some(self.n_heads),
            WeightId::Layer {
                param: LayerParam::KProj,
                ..
            } => Some(self.n_kv_heads),
            _ => None,
        };
        if let (Some(heads), &[rows, cols]) = (heads, raw.shape.as_slice()) {
            if rows % (2 * heads) != 0 {
                return Err(EngineError::TensorShape {
                    path: self.file.path.clone(),
                    tensor: id.hf_name(),
                    expected: vec![heads * (rows / heads).max(2), cols],
                    found: raw.shape,
                });
            }
            raw.data = unpermute_rows(&raw.data, heads, cols);
        }
        Ok(Some(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(v: f32) -> [u8; 2] {
        half::f16::from_f32(v).to_le_bytes()
    }

    #[test]
    fn q8_0_block() {
        let mut block = f16_bytes(0.5).to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let out = dequantize(GgmlType::Q8_0, &block).unwrap();
        assert_eq!(out.len(), 32);
        assert_eq!(out[0], -8.0);
        assert_eq!(out[31], 7.5);
    }

    #[test]
    fn q4_1_block_low_then_high_nibbles() {
        let mut block = f16_bytes(2.0).to_vec();
        block.extend(f16_bytes(-1.0));
        // byte j: low nibble = j, high nibble = 15 - j
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let out = dequantize(GgmlType::Q4_1, &block).unwrap();
        for j in 0..16 {
            assert_eq!(out[j], 2.0 * j as f32 - 1.0, "low {j}");
            assert_eq!(out[j + 16], 2.0 * (15 - j) as f32 - 1.0, "high {j}");
        }
    }

    #[test]
    fn q4_0_block_is_offset_by_eight() {
        let mut block = f16_bytes(0.25).to_vec();
        block.extend((0..16u8).map(|j| j | (j << 4)));
        let out = dequantize(GgmlType::Q4_0, &block).unwrap();
        assert_eq!(out[0], -2.0);
        assert_eq!(out[16 + 15], 0.25 * 7.0);
    }

    #[test]
    fn f16_and_bf16() {
        let bytes: Vec<u8> = [1.5f32, -2.25].iter().flat_map(|&v| f16_bytes(v)).collect();
        assert_eq!(dequantize(GgmlType::F16, &bytes).unwrap(), vec![1.5, -2.25]);
        let bytes: Vec<u8> = [1.5f32, -2.25]
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(
            dequantize(GgmlType::Bf16, &bytes).unwrap(),
            vec![1.5, -2.25]
        );
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols)
        let (n_heads, head_dim, cols) = (3, 8, 2);
        let rows = n_heads * head_dim;
        let hf: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        let mut permuted = vec![0.0; hf.len()];
        for h in 0..n_heads {
            for j in 0..2 {
                for i in 0..head_dim / 2 {
                    let src = (h * head_dim + j * head_dim / 2 + i) * cols;
                    let dst = (h * head_dim + i * 2 + j) * cols;
                    permuted[dst..dst + cols].copy_from_slice(&hf[src..src + cols]);
                }
            }
        }
        assert_ne!(permuted, hf);
        assert_eq!(unpermute_rows(&permuted, n_heads, cols), hf);
    }
}
