package stack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The connection-tracking table outlives the agent (Options.ConntrackFile).
//
// An agent restart must not cut the flows it tracks: a Service flow whose
// entry is lost has its next reply delivered from the backend's address,
// which the client's kernel answers with a RST; a flow that NetworkPolicy
// admitted has its next reply judged as a new flow, and may be dropped.
// Cilium keeps its tables in pinned BPF maps, which the kernel holds while
// the agent restarts. podnet keeps a copy of each entry in a file mapped
// into the agent's memory, normally on a tmpfs (/run): a store into the
// mapping is a store into the file's page, which stays when the process
// dies, even by SIGKILL, with no system call and no flush. A new agent with
// the same file reads every valid record back into the table.
//
// The file is a header and one fixed-size record (slot) per entry the table
// may hold. A record is written when its entry enters the table (new flows
// only, never per packet), its state word when the entry's TCP state bits
// change, and its used byte is cleared when the entry leaves. Its fields are
// written before its used byte and covered by a checksum, so a record that a
// dying process left half written is recognised and dropped. Expiry times
// are not kept: a recovered entry starts its timeout afresh.

const (
	ctFileMagic   = "podnetct"
	ctFileVersion = 1
	ctHeaderLen   = 16
	ctRecordLen   = 48

	ctRecUsed  = 1 // flags: the slot holds an entry
	ctRecPlain = 2 // flags: the entry is ctEntry.plain
)

// ctStore is the mapped file.
type ctStore struct {
	f     *os.File
	mem   []byte
	slots int32

	mu   sync.Mutex
	free []int32 // unused slots, taken from the end
}

// openCtStore maps path, creating it (mode 0600) or resizing it for slots
// records, and returns the store and the valid records it held.
func openCtStore(path string, slots int) (*ctStore, []ctRecord, error) {
	if slots <= 0 || slots > 1<<26 {
		return nil, nil, fmt.Errorf("conntrack file %s: %d slots", path, slots)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("conntrack file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("conntrack file: %w", err)
	}
	var old []ctRecord
	if fi.Size() >= ctHeaderLen {
		old = readCtRecords(f, fi.Size())
	}
	size := int64(ctHeaderLen + slots*ctRecordLen)
	// Start from a clean file of the right size: the records found are written back below.
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("conntrack file %s: %w", path, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("conntrack file %s: %w", path, err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("conntrack file %s: mmap: %w", path, err)
	}
	copy(mem, ctFileMagic)
	binary.LittleEndian.PutUint32(mem[8:], ctFileVersion)
	binary.LittleEndian.PutUint32(mem[12:], uint32(slots))
	s := &ctStore{f: f, mem: mem, slots: int32(slots), free: make([]int32, 0, slots)}
	for i := int32(slots) - 1; i >= 0; i-- {
		s.free = append(s.free, i)
	}
	if len(old) > slots {
		old = old[:slots]
	}
	return s, old, nil
}

// ctRecord is an entry as the file keeps it.
type ctRecord struct {
	orig, reply ctKey
	client      [4]byte
	plain       bool
	state       uint32
}

// readCtRecords returns the valid records of the file f of size bytes.
func readCtRecords(f *os.File, size int64) []ctRecord {
	hdr := make([]byte, ctHeaderLen)
	if _, err := f.ReadAt(hdr, 0); err != nil || string(hdr[:8]) != ctFileMagic ||
		binary.LittleEndian.Uint32(hdr[8:]) != ctFileVersion {
		return nil
	}
	n := int64(binary.LittleEndian.Uint32(hdr[12:]))
	if ctHeaderLen+n*ctRecordLen > size {
		return nil
	}
	buf := make([]byte, n*ctRecordLen)
	if _, err := f.ReadAt(buf, ctHeaderLen); err != nil {
		return nil
	}
	var recs []ctRecord
	for off := 0; off < len(buf); off += ctRecordLen {
		if r, ok := decodeCtRecord(buf[off : off+ctRecordLen]); ok {
			recs = append(recs, r)
		}
	}
	return recs
}

// decodeCtRecord decodes one slot; ok is false for an unused or damaged one.
func decodeCtRecord(b []byte) (ctRecord, bool) {
	flags := b[36]
	if flags&ctRecUsed == 0 || crc32.ChecksumIEEE(b[:37]) != binary.LittleEndian.Uint32(b[44:]) {
		return ctRecord{}, false
	}
	r := ctRecord{
		orig:  ctKey{binary.LittleEndian.Uint64(b[0:]), binary.LittleEndian.Uint64(b[8:])},
		reply: ctKey{binary.LittleEndian.Uint64(b[16:]), binary.LittleEndian.Uint64(b[24:])},
		plain: flags&ctRecPlain != 0,
		state: binary.LittleEndian.Uint32(b[40:]),
	}
	copy(r.client[:], b[32:36])
	if r.orig.proto() != r.reply.proto() || (r.orig.proto() != protoTCP && r.orig.proto() != protoUDP && !r.plain) {
		return ctRecord{}, false
	}
	return r, true
}

// record returns the bytes of slot i.
func (s *ctStore) record(i int32) []byte {
	off := ctHeaderLen + int(i)*ctRecordLen
	return s.mem[off : off+ctRecordLen : off+ctRecordLen]
}

// add gives e a slot and writes it there; false if none is free.
func (s *ctStore) add(e *ctEntry) bool {
	s.mu.Lock()
	n := len(s.free)
	if n == 0 {
		s.mu.Unlock()
		return false
	}
	i := s.free[n-1]
	s.free = s.free[:n-1]
	s.mu.Unlock()
	e.slot.Store(i + 1)
	b := s.record(i)
	binary.LittleEndian.PutUint64(b[0:], e.orig.addrs)
	binary.LittleEndian.PutUint64(b[8:], e.orig.rest)
	binary.LittleEndian.PutUint64(b[16:], e.reply.addrs)
	binary.LittleEndian.PutUint64(b[24:], e.reply.rest)
	copy(b[32:36], e.client[:])
	flags := byte(ctRecUsed)
	if e.plain {
		flags |= ctRecPlain
	}
	b[36] = flags
	s.stateWord(i).Store(e.state.Load())
	binary.LittleEndian.PutUint32(b[44:], crc32.ChecksumIEEE(b[:37]))
	return true
}

// stateWord is the state field of slot i, written by several packet readers at once.
func (s *ctStore) stateWord(i int32) *atomic.Uint32 {
	b := s.record(i)
	return (*atomic.Uint32)(unsafe.Pointer(&b[40])) // 8-byte aligned: page + 16 + 48i + 40
}

// setState records e's TCP state bits.
func (s *ctStore) setState(e *ctEntry) {
	if i := e.slot.Load() - 1; i >= 0 {
		s.stateWord(i).Store(e.state.Load())
	}
}

// remove frees e's slot.
func (s *ctStore) remove(e *ctEntry) {
	i := e.slot.Swap(0) - 1
	if i < 0 {
		return
	}
	b := s.record(i)
	b[36] = 0
	binary.LittleEndian.PutUint32(b[44:], 0)
	s.mu.Lock()
	s.free = append(s.free, i)
	s.mu.Unlock()
}

// close unmaps the file and closes it; the file stays for the next agent.
func (s *ctStore) close() error {
	err := unix.Munmap(s.mem)
	s.mem = nil
	return errors.Join(err, s.f.Close())
}
