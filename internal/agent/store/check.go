package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
)

// checkPages is the store's own version of bbolt's tx.Check, run over a
// plain copy of the file's pages instead of bbolt's memory map.
//
// bbolt's Check runs in a goroutine of its own, where a panic on a garbage
// page id would crash the agent beyond the reach of recover; and a plain
// read through bbolt never looks at the freelist, whose garbage only shows
// when a later write allocates a page from it and writes out of bounds. Here
// every access is a bounds-checked slice of data, so damage comes back as an
// error (or, at worst, a recoverable index panic) and the walk cannot loop.
//
// It checks what tx.Check checks: both meta pages' choice as bbolt makes it,
// every page reachable from the root bucket (branch and leaf pages, nested
// and inline buckets) lies below the high-water mark, identifies itself,
// has a valid type, fits its elements and is referenced once; the freelist
// lies below the high-water mark and has no duplicate; no reachable page is
// free; every page is either reachable or free. It also checks that the keys
// of each page are in order.
//
// The layout is bbolt's on-disk format (unchanged since boltdb, version 2),
// in the machine's byte order as bbolt writes it:
//
//	page header (16 bytes)   id u64 | flags u16 | count u16 | overflow u32
//	meta (after header)      magic u32 | version u32 | pageSize u32 | flags u32 |
//	                         root bucket {root u64, sequence u64} | freelist u64 |
//	                         pgid (high-water mark) u64 | txid u64 | checksum u64
//	branch element (16)      pos u32 | ksize u32 | pgid u64     (key at element+pos)
//	leaf element (16)        flags u32 | pos u32 | ksize u32 | vsize u32
//	bucket value             root u64 | sequence u64 [| inline leaf page if root == 0]
//	freelist                 count page ids u64; count 0xFFFF means the first
//	                         u64 holds the real count
func checkPages(data []byte, pageSize int) error {
	if pageSize < pageHeaderSize+metaSize {
		return fmt.Errorf("page size %d too small", pageSize)
	}
	m, err := activeMeta(data, pageSize)
	if err != nil {
		return err
	}
	if m.hwm < 2 || m.hwm > uint64(len(data)/pageSize) {
		return fmt.Errorf("high-water mark %d outside the file's %d pages", m.hwm, len(data)/pageSize)
	}
	c := &checker{
		data:      data[:m.hwm*uint64(pageSize)],
		pageSize:  uint64(pageSize),
		hwm:       m.hwm,
		reachable: map[uint64]bool{0: true, 1: true},
		freed:     make(map[uint64]bool),
	}
	if m.freelist != noFreelist {
		if err := c.checkFreelist(m.freelist); err != nil {
			return err
		}
	}
	if err := c.checkBucket(m.root, nil); err != nil {
		return err
	}
	if m.freelist == noFreelist {
		// Without a synced freelist free pages cannot be told from lost
		// ones. The store never writes such files.
		return nil
	}
	for id := uint64(2); id < c.hwm; id++ {
		if !c.reachable[id] && !c.freed[id] {
			return fmt.Errorf("page %d: unreachable and not free", id)
		}
	}
	return nil
}

const (
	pageHeaderSize = 16
	elementSize    = 16
	metaSize       = 64
	bucketHdrSize  = 16

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagFreelist = 0x10
	flagBucket   = 0x01

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)
)

var order = binary.NativeEndian

type meta struct {
	root, freelist, hwm, txid uint64
}

// activeMeta returns the meta page bbolt would use: the valid one with the
// higher transaction id.
func activeMeta(data []byte, pageSize int) (meta, error) {
	m0, err0 := readMeta(data, 0)
	m1, err1 := readMeta(data, pageSize)
	switch {
	case err0 == nil && err1 == nil:
		if m1.txid > m0.txid {
			return m1, nil
		}
		return m0, nil
	case err0 == nil:
		return m0, nil
	case err1 == nil:
		return m1, nil
	}
	return meta{}, fmt.Errorf("meta pages: %w; %w", err0, err1)
}

func readMeta(data []byte, off int) (meta, error) {
	if len(data) < off+pageHeaderSize+metaSize {
		return meta{}, errors.New("file too short")
	}
	b := data[off+pageHeaderSize : off+pageHeaderSize+metaSize]
	if order.Uint32(b[0:]) != boltMagic || order.Uint32(b[4:]) != boltVersion {
		return meta{}, errors.New("bad magic or version")
	}
	h := fnv.New64a()
	h.Write(b[:56])
	if h.Sum64() != order.Uint64(b[56:]) {
		return meta{}, errors.New("checksum mismatch")
	}
	return meta{
		root:     order.Uint64(b[16:]),
		freelist: order.Uint64(b[32:]),
		hwm:      order.Uint64(b[40:]),
		txid:     order.Uint64(b[48:]),
	}, nil
}

type checker struct {
	data      []byte // pages 0 … hwm-1
	pageSize  uint64
	hwm       uint64
	reachable map[uint64]bool
	freed     map[uint64]bool
}

type pageHeader struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
}

func parseHeader(b []byte) pageHeader {
	return pageHeader{
		id:       order.Uint64(b[0:]),
		flags:    order.Uint16(b[8:]),
		count:    order.Uint16(b[10:]),
		overflow: order.Uint32(b[12:]),
	}
}

// claim returns page id with its overflow pages after checking its bounds
// and identity, and marks them reachable, refusing a second reference.
func (c *checker) claim(id uint64) (pageHeader, []byte, error) {
	if id < 2 || id >= c.hwm {
		return pageHeader{}, nil, fmt.Errorf("page %d: beyond high-water mark %d", id, c.hwm)
	}
	off := id * c.pageSize
	h := parseHeader(c.data[off:])
	if h.id != id {
		return h, nil, fmt.Errorf("page %d: identifies itself as %d", id, h.id)
	}
	end := id + 1 + uint64(h.overflow)
	if end > c.hwm || end < id {
		return h, nil, fmt.Errorf("page %d: %d overflow pages run beyond high-water mark %d", id, h.overflow, c.hwm)
	}
	for p := id; p < end; p++ {
		if c.reachable[p] {
			return h, nil, fmt.Errorf("page %d: referenced twice", p)
		}
		if c.freed[p] {
			return h, nil, fmt.Errorf("page %d: reachable but free", p)
		}
		c.reachable[p] = true
	}
	return h, c.data[off : end*c.pageSize], nil
}

func (c *checker) checkFreelist(id uint64) error {
	h, b, err := c.claim(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if h.flags != flagFreelist {
		return fmt.Errorf("freelist: page %d has flags %#x", id, h.flags)
	}
	body := b[pageHeaderSize:]
	n := uint64(h.count)
	if n == 0xFFFF {
		if len(body) < 8 {
			return fmt.Errorf("freelist: page %d too short for its count", id)
		}
		n, body = order.Uint64(body), body[8:]
	}
	if n > uint64(len(body))/8 {
		return fmt.Errorf("freelist: %d ids do not fit page %d", n, id)
	}
	for i := range n {
		free := order.Uint64(body[i*8:])
		switch {
		case free < 2 || free >= c.hwm:
			return fmt.Errorf("freelist: page %d beyond high-water mark %d", free, c.hwm)
		case c.freed[free]:
			return fmt.Errorf("freelist: page %d freed twice", free)
		case c.reachable[free]:
			return fmt.Errorf("freelist: page %d is the freelist or a meta page", free)
		}
		c.freed[free] = true
	}
	return nil
}

// checkBucket walks a bucket's tree: the page at root, or the inline page
// when root is 0.
func (c *checker) checkBucket(root uint64, inline []byte) error {
	if root != 0 {
		return c.checkPage(root)
	}
	if len(inline) < pageHeaderSize {
		return errors.New("inline bucket too short")
	}
	h := parseHeader(inline)
	if h.flags != flagLeaf {
		return fmt.Errorf("inline bucket has flags %#x", h.flags)
	}
	return c.checkLeaf(h, inline, "inline bucket")
}

func (c *checker) checkPage(id uint64) error {
	h, b, err := c.claim(id)
	if err != nil {
		return err
	}
	where := fmt.Sprintf("page %d", id)
	switch h.flags {
	case flagLeaf:
		return c.checkLeaf(h, b, where)
	case flagBranch:
		if h.count == 0 {
			return fmt.Errorf("%s: empty branch", where)
		}
		var prev []byte
		for i := range int(h.count) {
			e := pageHeaderSize + i*elementSize
			if e+elementSize > len(b) {
				return fmt.Errorf("%s: element %d beyond the page", where, i)
			}
			key, err := slice(b, e+int(order.Uint32(b[e:])), int(order.Uint32(b[e+4:])))
			if err != nil {
				return fmt.Errorf("%s: element %d key: %w", where, i, err)
			}
			if i > 0 && bytes.Compare(prev, key) >= 0 {
				return fmt.Errorf("%s: keys out of order at element %d", where, i)
			}
			prev = key
			if err := c.checkPage(order.Uint64(b[e+8:])); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("%s: unexpected flags %#x", where, h.flags)
	}
}

// checkLeaf checks a leaf page b (a page or an inline page) and walks the
// buckets it holds.
func (c *checker) checkLeaf(h pageHeader, b []byte, where string) error {
	var prev []byte
	for i := range int(h.count) {
		e := pageHeaderSize + i*elementSize
		if e+elementSize > len(b) {
			return fmt.Errorf("%s: element %d beyond the page", where, i)
		}
		flags := order.Uint32(b[e:])
		kOff := e + int(order.Uint32(b[e+4:]))
		kLen, vLen := int(order.Uint32(b[e+8:])), int(order.Uint32(b[e+12:]))
		key, err := slice(b, kOff, kLen)
		if err != nil {
			return fmt.Errorf("%s: element %d key: %w", where, i, err)
		}
		val, err := slice(b, kOff+kLen, vLen)
		if err != nil {
			return fmt.Errorf("%s: element %d value: %w", where, i, err)
		}
		if i > 0 && bytes.Compare(prev, key) >= 0 {
			return fmt.Errorf("%s: keys out of order at element %d", where, i)
		}
		prev = key
		switch flags {
		case 0:
		case flagBucket:
			if len(val) < bucketHdrSize {
				return fmt.Errorf("%s: bucket %q: header too short", where, key)
			}
			if err := c.checkBucket(order.Uint64(val), val[bucketHdrSize:]); err != nil {
				return fmt.Errorf("bucket %q: %w", key, err)
			}
		default:
			return fmt.Errorf("%s: element %d has flags %#x", where, i, flags)
		}
	}
	return nil
}

// slice returns b[off:off+n] or an error if that is out of range; off and n
// come from the file, so they may be anything.
func slice(b []byte, off, n int) ([]byte, error) {
	if off < 0 || n < 0 || off > len(b) || n > len(b)-off {
		return nil, fmt.Errorf("%d bytes at %d outside %d-byte page", n, off, len(b))
	}
	return b[off : off+n], nil
}
