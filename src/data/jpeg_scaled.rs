//! A baseline-JPEG decoder for output at 1/8 or 1/4 of the image size, read
//! straight from the entropy-coded data.
//!
//! At those scales only the lowest DCT coefficients contribute: the DC term
//! alone at 1/8, the top-left 2×2 at 1/4. A general decoder still unpacks
//! every coefficient of every block into a 64-value array, dequantizes it and
//! hands it to an IDCT worker; here every Huffman code is still read (the
//! format gives no way around that), but the coefficients past the kept ones
//! are skipped with one table lookup per code, without being stored. For a
//! 2124×2056 fundus photo this is several times faster than `jpeg-decoder`'s
//! own scaled decoding (figures in `bench/README.md`).
//!
//! The output follows `jpeg-decoder`'s scaled decoding step for step (the same
//! reduced IDCT, the same chroma upsampling, the same YCbCr → RGB arithmetic,
//! including the 16-bit SSSE3 variant it uses for most of each row on x86
//! CPUs), so the fast path gives exactly the pixels it gave before and caches
//! of preprocessed tensors stay valid. `tests/data_jpeg_scaled.rs` compares the
//! two decoders byte for byte on many encoder settings.
//!
//! Only the common case is handled: 8-bit baseline or extended sequential
//! Huffman coding, one interleaved scan, grayscale or YCbCr, chroma sampled at
//! 1×, ½× horizontally and/or vertically, restart intervals allowed. For
//! anything else (progressive or arithmetic coding, 12-bit samples, several
//! scans, CMYK or RGB-coded files, other subsampling) and for any
//! inconsistency in the data (a truncated scan, a bad Huffman code, a missing
//! restart marker or EOI), [`decode`] returns `None` and the caller uses
//! `jpeg-decoder`, which also produces the error message for broken files.

use super::image::RgbImage;

/// Lookahead bits of the symbol tables (covers nearly all codes in practice).
const SYMBOL_BITS: u32 = 9;
/// Lookahead bits of the AC skip table (code plus its extra bits).
const SKIP_BITS: u32 = 11;
/// In a skip-table entry: the code is end-of-block.
const SKIP_EOB: u16 = 1 << 15;

/// Zigzag positions of the coefficients that the 2×2 reduced IDCT reads, in
/// the order (0,0), (0,1), (1,0), (1,1): natural indices 0, 1, 8, 9.
const ZIGZAG_2X2: [usize; 4] = [0, 1, 2, 4];

/// Decodes `bytes` at `1/8` (`block_px = 1`) or `1/4` (`block_px = 2`) scale:
/// `ceil(width * block_px / 8)` by `ceil(height * block_px / 8)` RGB pixels.
///
/// Returns `None` for anything outside the supported subset or any
/// inconsistency in the data (see the module docs).
pub fn decode(bytes: &[u8], block_px: usize) -> Option<RgbImage> {
    if block_px != 1 && block_px != 2 {
        return None;
    }
    let headers = Headers::parse(bytes)?;
    let (planes, scan_end) = decode_scan(bytes, &headers, block_px)?;
    if !ends_with_eoi(bytes, scan_end) {
        return None;
    }
    Some(compose(&headers.frame, &planes, block_px))
}

#[derive(Debug, Clone)]
struct FrameComponent {
    id: u8,
    h: usize,
    v: usize,
    quant: usize,
    dc_table: usize,
    ac_table: usize,
}

#[derive(Debug, Clone)]
struct Frame {
    width: usize,
    height: usize,
    components: Vec<FrameComponent>,
    h_max: usize,
    v_max: usize,
}

impl Frame {
    fn mcus(&self) -> (usize, usize) {
        (
            self.width.div_ceil(8 * self.h_max),
            self.height.div_ceil(8 * self.v_max),
        )
    }

    /// The component's meaningful size in output pixels (as `jpeg-decoder`
    /// computes it): the image size scaled by the sampling ratio and block_px.
    fn component_size(&self, c: &FrameComponent, block_px: usize) -> (usize, usize) {
        (
            (self.width * c.h * block_px).div_ceil(self.h_max * 8),
            (self.height * c.v * block_px).div_ceil(self.v_max * 8),
        )
    }
}

/// Everything before the entropy-coded data of the first scan.
struct Headers {
    frame: Frame,
    /// Quantization tables in zigzag order.
    quant: [Option<[u16; 64]>; 4],
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
    restart_interval: usize,
    /// Offset of the first byte of entropy-coded data.
    scan_start: usize,
}

fn be16(bytes: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]) as usize)
}

impl Headers {
    fn parse(bytes: &[u8]) -> Option<Headers> {
        if bytes.get(..2)? != [0xFF, 0xD8] {
            return None;
        }
        let mut pos = 2;
        let mut frame: Option<Frame> = None;
        let mut quant = [None; 4];
        let mut dc: [Option<Huffman>; 4] = Default::default();
        let mut ac: [Option<Huffman>; 4] = Default::default();
        let mut restart_interval = 0;
        let mut jfif = false;
        let mut adobe_transform: Option<u8> = None;
        loop {
            // Markers may be preceded by any number of 0xFF fill bytes.
            if *bytes.get(pos)? != 0xFF {
                return None;
            }
            while *bytes.get(pos)? == 0xFF {
                pos += 1;
            }
            let marker = bytes[pos];
            pos += 1;
            let len = be16(bytes, pos)?;
            if len < 2 || pos + len > bytes.len() {
                return None;
            }
            let seg = &bytes[pos + 2..pos + len];
            pos += len;
            match marker {
                0xC0 | 0xC1 => frame = Some(parse_frame(seg)?),
                0xC4 => parse_huffman(seg, &mut dc, &mut ac)?,
                0xDB => parse_quant(seg, &mut quant)?,
                0xDD => restart_interval = be16(seg, 0)?,
                0xE0 => jfif |= seg.starts_with(b"JFIF\0"),
                0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => adobe_transform = Some(seg[11]),
                0xE1..=0xEF | 0xFE => {}
                0xDA => {
                    let frame = frame?;
                    let is_ycbcr = match frame.components.len() {
                        1 => true,
                        _ => {
                            let ids: Vec<u8> = frame.components.iter().map(|c| c.id).collect();
                            ycbcr_by_ids(&ids, jfif, adobe_transform)
                        }
                    };
                    if !is_ycbcr {
                        return None;
                    }
                    let frame = parse_scan(seg, frame)?;
                    let has_tables = frame
                        .components
                        .iter()
                        .all(|c| quant[c.quant].is_some() && dc[c.dc_table].is_some() && ac[c.ac_table].is_some());
                    return has_tables.then_some(Headers {
                        frame,
                        quant,
                        dc,
                        ac,
                        restart_interval,
                        scan_start: pos,
                    });
                }
                // Progressive, lossless, hierarchical and arithmetic-coded
                // frames, DNL, a second SOI, EOI before any scan, ...
                _ => return None,
            }
        }
    }
}

/// `jpeg-decoder`'s rule for a 3-component file being YCbCr (the other
/// outcomes — RGB, big-gamut YCC/RGB — are left to it).
fn ycbcr_by_ids(ids: &[u8], jfif: bool, adobe_transform: Option<u8>) -> bool {
    match ids {
        [1, 2, 3] => true,
        [1, 34, 35] | [82, 71, 66] | [114, 103, 98] => false,
        _ if jfif => true,
        _ => adobe_transform.is_none_or(|t| t == 1),
    }
}

fn parse_frame(seg: &[u8]) -> Option<Frame> {
    if *seg.first()? != 8 {
        return None; // 12-bit samples
    }
    let height = be16(seg, 1)?;
    let width = be16(seg, 3)?;
    let n = *seg.get(5)? as usize;
    if width == 0 || height == 0 || !(n == 1 || n == 3) || seg.len() < 6 + 3 * n {
        return None;
    }
    let mut components = Vec::with_capacity(n);
    for i in 0..n {
        let s = &seg[6 + 3 * i..9 + 3 * i];
        let (h, v, quant) = ((s[1] >> 4) as usize, (s[1] & 15) as usize, s[2] as usize);
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) || quant > 3 {
            return None;
        }
        components.push(FrameComponent {
            id: s[0],
            h,
            v,
            quant,
            dc_table: 0,
            ac_table: 0,
        });
    }
    if n == 1 && (components[0].h != 1 || components[0].v != 1) {
        return None; // legal, but its block layout differs from the MCU grid
    }
    let h_max = components.iter().map(|c| c.h).max()?;
    let v_max = components.iter().map(|c| c.v).max()?;
    // Chroma must be at the full rate or half of it in each direction.
    if components
        .iter()
        .any(|c| (h_max != c.h && h_max != 2 * c.h) || (v_max != c.v && v_max != 2 * c.v))
    {
        return None;
    }
    Some(Frame {
        width,
        height,
        components,
        h_max,
        v_max,
    })
}

fn parse_scan(seg: &[u8], mut frame: Frame) -> Option<Frame> {
    let n = *seg.first()? as usize;
    if n != frame.components.len() || seg.len() < 1 + 2 * n + 3 {
        return None; // non-interleaved scans: one component per scan
    }
    for (i, c) in frame.components.iter_mut().enumerate() {
        // Components must appear in frame order.
        if seg[1 + 2 * i] != c.id {
            return None;
        }
        let tables = seg[2 + 2 * i];
        c.dc_table = (tables >> 4) as usize;
        c.ac_table = (tables & 15) as usize;
        if c.dc_table > 3 || c.ac_table > 3 {
            return None;
        }
    }
    let tail = &seg[1 + 2 * n..];
    // Full spectral range, no successive approximation: sequential.
    (tail[0] == 0 && tail[1] == 63 && tail[2] == 0).then_some(frame)
}

fn parse_quant(mut seg: &[u8], quant: &mut [Option<[u16; 64]>; 4]) -> Option<()> {
    while !seg.is_empty() {
        let (precision, id) = (seg[0] >> 4, (seg[0] & 15) as usize);
        if id > 3 {
            return None;
        }
        let mut table = [0u16; 64];
        let size = match precision {
            0 => {
                let v = seg.get(1..65)?;
                table.iter_mut().zip(v).for_each(|(t, &b)| *t = b as u16);
                65
            }
            1 => {
                let v = seg.get(1..129)?;
                table
                    .iter_mut()
                    .zip(v.chunks_exact(2))
                    .for_each(|(t, b)| *t = u16::from_be_bytes([b[0], b[1]]));
                129
            }
            _ => return None,
        };
        quant[id] = Some(table);
        seg = &seg[size..];
    }
    Some(())
}

fn parse_huffman(mut seg: &[u8], dc: &mut [Option<Huffman>; 4], ac: &mut [Option<Huffman>; 4]) -> Option<()> {
    while !seg.is_empty() {
        let (class, id) = (seg[0] >> 4, (seg[0] & 15) as usize);
        if class > 1 || id > 3 {
            return None;
        }
        let counts: [u8; 16] = seg.get(1..17)?.try_into().ok()?;
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let symbols = seg.get(17..17 + total)?;
        let table = Huffman::new(&counts, symbols)?;
        if class == 0 {
            dc[id] = Some(table);
        } else {
            ac[id] = Some(table);
        }
        seg = &seg[17 + total..];
    }
    Some(())
}

/// A Huffman table with a lookahead table for short codes, a canonical
/// decoder for long ones, and (for AC tables) a table that skips a code
/// together with its extra bits.
#[derive(Debug, Clone)]
struct Huffman {
    /// `(length << 8) | symbol` for codes up to [`SYMBOL_BITS`] long, 0 otherwise.
    fast: Vec<u16>,
    /// Per length 1..=16: the largest code of that length (-1 if none).
    max_code: [i32; 17],
    /// Per length: `index of its first symbol - its first code`.
    offset: [i32; 17],
    symbols: Vec<u8>,
    /// For AC use: `consumed bits | (coefficient advance << 5)`, or
    /// `consumed bits | SKIP_EOB`; 0 where the slow path is needed.
    skip: Vec<u16>,
}

impl Huffman {
    fn new(counts: &[u8; 16], symbols: &[u8]) -> Option<Huffman> {
        let mut fast = vec![0u16; 1 << SYMBOL_BITS];
        let mut skip = vec![0u16; 1 << SKIP_BITS];
        let mut max_code = [-1i32; 17];
        let mut offset = [0i32; 17];
        let mut code = 0u32;
        let mut index = 0usize;
        for len in 1..=16u32 {
            let n = counts[len as usize - 1] as usize;
            offset[len as usize] = index as i32 - code as i32;
            for &symbol in &symbols[index..index + n] {
                if code >= 1 << len {
                    return None; // over-subscribed
                }
                if len <= SYMBOL_BITS {
                    let shift = SYMBOL_BITS - len;
                    let first = (code << shift) as usize;
                    fast[first..first + (1 << shift)].fill(((len as u16) << 8) | symbol as u16);
                }
                let (run, size) = (symbol >> 4, (symbol & 15) as u32);
                let (bits, entry) = match (run, size) {
                    (0, 0) => (len, SKIP_EOB),
                    (15, 0) => (len, 16 << 5),
                    (_, 0) => (0, 0), // invalid in baseline; the slow path rejects it
                    _ => (len + size, ((run as u16) + 1) << 5),
                };
                if bits != 0 && bits <= SKIP_BITS {
                    let shift = SKIP_BITS - len;
                    let first = (code << shift) as usize;
                    skip[first..first + (1 << shift)].fill(entry | bits as u16);
                }
                code += 1;
            }
            if n > 0 {
                max_code[len as usize] = code as i32 - 1;
            }
            index += n;
            code <<= 1;
        }
        Some(Huffman {
            fast,
            max_code,
            offset,
            symbols: symbols.to_vec(),
            skip,
        })
    }

    /// Decodes one symbol; `None` for a code that is not in the table.
    #[inline(always)]
    fn symbol(&self, bits: &mut BitReader) -> Option<u8> {
        bits.refill();
        let entry = self.fast[bits.peek(SYMBOL_BITS)];
        if entry != 0 {
            bits.consume((entry >> 8) as u32);
            return Some(entry as u8);
        }
        let word = bits.peek(16) as i32;
        for len in SYMBOL_BITS + 1..=16 {
            let code = word >> (16 - len);
            if code <= self.max_code[len as usize] {
                bits.consume(len);
                return self.symbols.get((code + self.offset[len as usize]) as usize).copied();
            }
        }
        None
    }
}

/// An MSB-first bit reader over entropy-coded data that removes stuffed
/// zero bytes and stops at the first marker. Past a marker (or the end of the
/// data) it supplies zero bits and counts them, so a scan that used any of
/// them is recognised as truncated.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Next bit at bit 63.
    buf: u64,
    bits: u32,
    /// Zero bits supplied after a marker or the end of the data.
    padding: u32,
    at_marker: bool,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader {
            data,
            pos,
            buf: 0,
            bits: 0,
            padding: 0,
            at_marker: false,
        }
    }

    /// Ensures at least 32 buffered bits.
    #[inline(always)]
    fn refill(&mut self) {
        if self.bits >= 32 {
            return;
        }
        if !self.at_marker {
            if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
                let word = u64::from_be_bytes(chunk.try_into().unwrap());
                // No 0xFF byte among the 8: take whole bytes at once.
                let inverted = !word;
                let has_ff = inverted.wrapping_sub(0x0101_0101_0101_0101) & !inverted & 0x8080_8080_8080_8080;
                if has_ff == 0 {
                    let n = (64 - self.bits) / 8;
                    self.buf |= (word >> (64 - 8 * n)) << (64 - self.bits - 8 * n);
                    self.bits += 8 * n;
                    self.pos += n as usize;
                    return;
                }
            }
        }
        self.refill_bytewise();
    }

    #[cold]
    fn refill_bytewise(&mut self) {
        while self.bits <= 56 {
            let byte = if self.at_marker {
                None
            } else {
                match self.data.get(self.pos) {
                    Some(0xFF) => match self.data.get(self.pos + 1) {
                        Some(0x00) => {
                            self.pos += 2;
                            Some(0xFF)
                        }
                        _ => None,
                    },
                    Some(&b) => {
                        self.pos += 1;
                        Some(b)
                    }
                    None => None,
                }
            };
            match byte {
                Some(b) => self.buf |= (b as u64) << (56 - self.bits),
                None => {
                    self.at_marker = true;
                    self.padding += 8;
                }
            }
            self.bits += 8;
        }
    }

    #[inline(always)]
    fn peek(&self, n: u32) -> usize {
        (self.buf >> (64 - n)) as usize
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buf <<= n;
        self.bits -= n;
    }

    /// Reads `size` (1..=15) extra bits and extends them to a signed value.
    #[inline(always)]
    fn signed(&mut self, size: u32) -> i32 {
        self.refill();
        let v = self.peek(size) as i32;
        self.consume(size);
        if v < 1 << (size - 1) {
            v - (1 << size) + 1
        } else {
            v
        }
    }

    /// True if no padding bit was consumed.
    fn intact(&self) -> bool {
        self.padding <= self.bits
    }

    /// At a restart interval's end: checks the data so far was complete, then
    /// expects marker `RSTn` and continues after it with an empty buffer.
    fn restart(&mut self, n: usize) -> bool {
        if !self.intact() {
            return false;
        }
        // Unused bits of the last byte are padding; the marker follows,
        // possibly after 0xFF fill bytes.
        while self.data.get(self.pos..self.pos + 2) == Some(&[0xFF, 0xFF][..]) {
            self.pos += 1;
        }
        let marker = [0xFF, 0xD0 + n as u8];
        if self.data.get(self.pos..self.pos + 2) != Some(&marker[..]) {
            return false;
        }
        self.pos += 2;
        self.buf = 0;
        self.bits = 0;
        self.padding = 0;
        self.at_marker = false;
        true
    }
}

/// One plane per component, at block_px pixels per block side, covering the
/// whole MCU grid.
struct Plane {
    data: Vec<u8>,
    stride: usize,
}

/// Decodes the scan into planes; also returns where the bit reader stopped
/// (never past the marker that ends the scan).
fn decode_scan(bytes: &[u8], headers: &Headers, block_px: usize) -> Option<(Vec<Plane>, usize)> {
    let frame = &headers.frame;
    let (mcus_x, mcus_y) = frame.mcus();
    let mut planes: Vec<Plane> = frame
        .components
        .iter()
        .map(|c| {
            let stride = mcus_x * c.h * block_px;
            Plane {
                data: vec![0; stride * mcus_y * c.v * block_px],
                stride,
            }
        })
        .collect();
    // Quantizers of the kept coefficients, and the tables, per component.
    let quant: Vec<[i32; 4]> = frame
        .components
        .iter()
        .map(|c| {
            let q = headers.quant[c.quant].as_ref().unwrap();
            ZIGZAG_2X2.map(|z| q[z] as i32)
        })
        .collect();
    let tables: Vec<(&Huffman, &Huffman)> = frame
        .components
        .iter()
        .map(|c| {
            (
                headers.dc[c.dc_table].as_ref().unwrap(),
                headers.ac[c.ac_table].as_ref().unwrap(),
            )
        })
        .collect();
    let last_kept = if block_px == 1 { 0 } else { 4 };
    let mut bits = BitReader::new(bytes, headers.scan_start);
    let mut predictors = vec![0i16; frame.components.len()];
    let mut until_restart = headers.restart_interval;
    let mut restarts = 0usize;
    for mcu_y in 0..mcus_y {
        // Stop early on a truncated scan instead of decoding padding.
        if !bits.intact() {
            return None;
        }
        for mcu_x in 0..mcus_x {
            if headers.restart_interval > 0 {
                if until_restart == 0 {
                    if !bits.restart(restarts % 8) {
                        return None;
                    }
                    restarts += 1;
                    predictors.fill(0);
                    until_restart = headers.restart_interval;
                }
                until_restart -= 1;
            }
            for (ci, c) in frame.components.iter().enumerate() {
                let (dc, ac) = tables[ci];
                for by in 0..c.v {
                    for bx in 0..c.h {
                        let coefficients = decode_block(&mut bits, dc, ac, &mut predictors[ci], last_kept)?;
                        let plane = &mut planes[ci];
                        let x = (mcu_x * c.h + bx) * block_px;
                        let y = (mcu_y * c.v + by) * block_px;
                        write_block(plane, x, y, &coefficients, &quant[ci], block_px);
                    }
                }
            }
        }
    }
    bits.intact().then_some((planes, bits.pos))
}

/// Decodes one block and returns its kept coefficients (zigzag 0, 1, 2, 4;
/// only the first when `last_kept` is 0).
#[inline(always)]
fn decode_block(
    bits: &mut BitReader,
    dc: &Huffman,
    ac: &Huffman,
    predictor: &mut i16,
    last_kept: usize,
) -> Option<[i32; 4]> {
    let mut kept = [0i32; 4];
    let size = dc.symbol(bits)? as u32;
    let diff = match size {
        0 => 0,
        1..=11 => bits.signed(size),
        _ => return None,
    };
    *predictor = predictor.wrapping_add(diff as i16);
    kept[0] = *predictor as i32;
    let mut k = 1usize;
    // The few coefficients that are kept: full decode.
    while k <= last_kept {
        let symbol = ac.symbol(bits)?;
        let (run, size) = ((symbol >> 4) as usize, (symbol & 15) as u32);
        if size == 0 {
            match run {
                0 => return Some(kept),
                15 => k += 16,
                _ => return None,
            }
            continue;
        }
        k += run;
        let value = bits.signed(size);
        if let Some(slot) = ZIGZAG_2X2.iter().position(|&z| z == k) {
            kept[slot] = value;
        }
        k += 1;
    }
    // The rest: skip each code and its extra bits in one step.
    while k < 64 {
        bits.refill();
        let entry = ac.skip[bits.peek(SKIP_BITS)];
        if entry != 0 {
            bits.consume((entry & 31) as u32);
            if entry & SKIP_EOB != 0 {
                return Some(kept);
            }
            k += (entry >> 5) as usize;
            continue;
        }
        let symbol = ac.symbol(bits)?;
        let (run, size) = ((symbol >> 4) as usize, (symbol & 15) as u32);
        match (run, size) {
            (0, 0) => return Some(kept),
            (15, 0) => k += 16,
            (_, 0) => return None,
            _ => {
                bits.refill();
                bits.consume(size);
                k += run + 1;
            }
        }
    }
    // A run past coefficient 63 is corrupt (jpeg-decoder decides what to do).
    (k == 64).then_some(kept)
}

/// The reduced IDCT of `jpeg-decoder` (1×1 and 2×2), written into the plane.
#[inline(always)]
fn write_block(plane: &mut Plane, x: usize, y: usize, kept: &[i32; 4], quant: &[i32; 4], block_px: usize) {
    let clamp = |v: i32| v.clamp(0, 255) as u8;
    let s = |i: usize| kept[i].wrapping_mul(quant[i]);
    if block_px == 1 {
        // Integer division truncates toward zero, as in jpeg-decoder; the
        // only values where that differs from a shift are clamped to 0.
        plane.data[y * plane.stride + x] = clamp(s(0).wrapping_add(128 * 8) / 8);
        return;
    }
    let (s00, s01, s10, s11) = (s(0), s(1), s(2), s(3));
    let bias = (1 << 2) + (128 << 3);
    let x0 = s00.wrapping_add(s10).wrapping_add(bias);
    let x2 = s00.wrapping_sub(s10).wrapping_add(bias);
    let x1 = s01.wrapping_add(s11);
    let x3 = s01.wrapping_sub(s11);
    let row0 = y * plane.stride + x;
    let row1 = row0 + plane.stride;
    plane.data[row0] = clamp(x0.wrapping_add(x1) >> 3);
    plane.data[row0 + 1] = clamp(x0.wrapping_sub(x1) >> 3);
    plane.data[row1] = clamp(x2.wrapping_add(x3) >> 3);
    plane.data[row1 + 1] = clamp(x2.wrapping_sub(x3) >> 3);
}

/// After the scan: the next marker (past any restart markers) must be EOI.
fn ends_with_eoi(bytes: &[u8], from: usize) -> bool {
    let mut pos = from;
    while let Some(offset) = bytes[pos..].iter().position(|&b| b == 0xFF) {
        pos += offset;
        match bytes.get(pos + 1) {
            Some(0x00) | Some(0xD0..=0xD7) | Some(0xFF) => pos += 1,
            Some(0xD9) => return true,
            _ => return false,
        }
    }
    false
}

/// Upsamples the chroma planes and converts to interleaved RGB, exactly as
/// `jpeg-decoder` does for scaled output (its SSSE3 arithmetic for the
/// leading pixels of a row where it uses that, its scalar formula elsewhere).
fn compose(frame: &Frame, planes: &[Plane], block_px: usize) -> RgbImage {
    let width = (frame.width * block_px).div_ceil(8);
    let height = (frame.height * block_px).div_ceil(8);
    let mut data = vec![0u8; width * height * 3];
    if frame.components.len() == 1 {
        let plane = &planes[0];
        for (y, out) in data.chunks_exact_mut(width * 3).enumerate() {
            let row = &plane.data[y * plane.stride..][..width];
            for (px, &g) in out.chunks_exact_mut(3).zip(row) {
                px.fill(g);
            }
        }
        return RgbImage { width, height, data };
    }
    let line_len = 2 * planes.iter().map(|p| p.stride).max().unwrap_or(0) + 2;
    let simd = simd_converted_pixels(width);
    let mut lines = [vec![0u8; line_len], vec![0u8; line_len], vec![0u8; line_len]];
    // Per component: its meaningful size and whether it is subsampled.
    let layouts: Vec<_> = frame
        .components
        .iter()
        .map(|c| {
            (
                frame.component_size(c, block_px),
                (c.h < frame.h_max && width != 1, c.v < frame.v_max && height != 1),
            )
        })
        .collect();
    for (y, out) in data.chunks_exact_mut(width * 3).enumerate() {
        for (ci, &(size, halves)) in layouts.iter().enumerate() {
            upsample_row(&planes[ci], size, halves, y, width, &mut lines[ci]);
        }
        // Two loops rather than a choice per pixel, so each one inlines.
        let (head, tail) = out.split_at_mut(simd * 3);
        let (y, cb, cr) = (&lines[0][..width], &lines[1][..width], &lines[2][..width]);
        for (i, px) in head.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&ycbcr_to_rgb_ssse3(y[i], cb[i], cr[i]));
        }
        for (i, px) in tail.chunks_exact_mut(3).enumerate() {
            let i = simd + i;
            px.copy_from_slice(&ycbcr_to_rgb(y[i], cb[i], cr[i]));
        }
    }
    RgbImage { width, height, data }
}

/// `jpeg-decoder`'s "fancy" (triangle-filter) upsampling of one output row.
/// (It treats a component as not subsampled along an axis where the output is
/// one pixel long; the caller passes `half_x`/`half_y` accordingly.)
fn upsample_row(
    plane: &Plane,
    (in_width, in_height): (usize, usize),
    (half_x, half_y): (bool, bool),
    row: usize,
    out_width: usize,
    out: &mut [u8],
) {
    let (near, far) = if half_y {
        let near = row / 2;
        let far = if row.is_multiple_of(2) {
            near.saturating_sub(1)
        } else {
            (near + 1).min(in_height - 1)
        };
        (near, far)
    } else {
        (row, row)
    };
    let near = &plane.data[near * plane.stride..];
    let far = &plane.data[far * plane.stride..];
    match (half_x, half_y) {
        (false, false) => out[..out_width].copy_from_slice(&near[..out_width]),
        (false, true) => {
            for i in 0..out_width {
                out[i] = ((3 * near[i] as u32 + far[i] as u32 + 2) >> 2) as u8;
            }
        }
        (true, false) => {
            let input = near;
            if in_width == 1 {
                out[0] = input[0];
                out[1] = input[0];
                return;
            }
            out[0] = input[0];
            out[1] = ((input[0] as u32 * 3 + input[1] as u32 + 2) >> 2) as u8;
            for i in 1..in_width - 1 {
                let sample = 3 * input[i] as u32 + 2;
                out[i * 2] = ((sample + input[i - 1] as u32) >> 2) as u8;
                out[i * 2 + 1] = ((sample + input[i + 1] as u32) >> 2) as u8;
            }
            let last = in_width - 1;
            out[last * 2] = ((input[last] as u32 * 3 + input[last - 1] as u32 + 2) >> 2) as u8;
            out[last * 2 + 1] = input[last];
        }
        (true, true) => {
            let column = |i: usize| 3 * near[i] as u32 + far[i] as u32;
            if in_width == 1 {
                let value = ((column(0) + 2) >> 2) as u8;
                out[0] = value;
                out[1] = value;
                return;
            }
            let mut t1 = column(0);
            out[0] = ((t1 + 2) >> 2) as u8;
            for i in 1..in_width {
                let t0 = t1;
                t1 = column(i);
                out[i * 2 - 1] = ((3 * t0 + t1 + 8) >> 4) as u8;
                out[i * 2] = ((3 * t1 + t0 + 8) >> 4) as u8;
            }
            out[in_width * 2 - 1] = ((t1 + 2) >> 2) as u8;
        }
    }
}

/// Fixed-point JFIF YCbCr → RGB with 20 fractional bits (jpeg-decoder's
/// scalar formula).
#[inline(always)]
fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    const SHIFT: i32 = 20;
    const fn fixed(x: f32) -> i32 {
        (x * (1 << SHIFT) as f32 + 0.5) as i32
    }
    let clamp = |v: i32| (v >> SHIFT).clamp(0, 255) as u8;
    let y = ((y as i32) << SHIFT) + (1 << (SHIFT - 1));
    let (cb, cr) = (cb as i32 - 128, cr as i32 - 128);
    [
        clamp(y + fixed(1.40200) * cr),
        clamp(y - fixed(0.34414) * cb - fixed(0.71414) * cr),
        clamp(y + fixed(1.77200) * cb),
    ]
}

/// How many leading pixels of a `width`-pixel row `jpeg-decoder` converts
/// with its SSSE3 code (whole vectors of 8, leaving at least one vector for
/// the scalar code); 0 where it has no SIMD conversion.
fn simd_converted_pixels(width: usize) -> usize {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("ssse3") {
            return (width / 8).saturating_sub(1) * 8;
        }
    }
    let _ = width;
    0
}

/// `jpeg-decoder`'s SSSE3 YCbCr → RGB arithmetic, lane by lane: 16-bit values
/// with 6 fractional bits, rounding high multiplies (`pmulhrsw`), saturating
/// adds, an arithmetic shift and an unsigned saturating pack.
#[inline(always)]
fn ycbcr_to_rgb_ssse3(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let mulhrs = |a: i16, b: i16| ((a as i32 * b as i32 + (1 << 14)) >> 15) as i16;
    let y = ((y as i16) << 6).saturating_add(1 << 5);
    let cb = ((cb as i16) << 6).saturating_sub(128 << 6);
    let cr = ((cr as i16) << 6).saturating_sub(128 << 6);
    let r = y.saturating_add(mulhrs(cr, 13173).saturating_add(cr));
    let g = y.saturating_sub(mulhrs(cb, 11276).saturating_add(mulhrs(cr, 23401)));
    let b = y.saturating_add(mulhrs(cb, 25297).saturating_add(cb));
    let pack = |v: i16| (v >> 6).clamp(0, 255) as u8;
    [pack(r), pack(g), pack(b)]
}
