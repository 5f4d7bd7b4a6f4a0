package framework

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Memory is a process's resident memory, from /proc/<pid>/status.
type Memory struct {
	// RSS is the resident set now (VmRSS), Peak its high-water mark (VmHWM), in bytes.
	RSS, Peak int64
}

// MiB renders bytes as MiB.
func MiB(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// ReadMemory reads the resident memory of a process (Linux).
func ReadMemory(pid int) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	defer f.Close()
	var m Memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.Peak
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("/proc/%d/status %s: %w", pid, name, err)
		}
		*dst = kb << 10
	}
	return m, sc.Err()
}

// MemoryContains reports, for each needle, whether the process's memory holds it
// anywhere: every readable mapping of /proc/<pid>/mem is searched (Linux; the caller
// must be allowed to trace the process, as a parent running as the same user or root
// is). Freed memory that was not reused counts: once a value has been in the process,
// it may be found, which is what a search for a value that must never have reached
// it wants. It also returns how many bytes were searched.
func MemoryContains(pid int, needles ...[]byte) (found []bool, searched int64, err error) {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, 0, err
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, 0, err
	}
	defer mem.Close()
	found = make([]bool, len(needles))
	longest := 0
	for _, n := range needles {
		longest = max(longest, len(n))
	}
	const chunk = 4 << 20
	buf := make([]byte, chunk+longest)
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[1], "r") {
			continue
		}
		if len(f) >= 6 && (f[5] == "[vvar]" || f[5] == "[vsyscall]") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		// Read the mapping in chunks that overlap by the longest needle, so that a value
		// across a chunk boundary is found.
		carry := 0
		for off := start; off < end; {
			n := min(uint64(chunk), end-off)
			read, err := mem.ReadAt(buf[carry:carry+int(n)], int64(off))
			if read <= 0 {
				if err != nil && err != io.EOF {
					break // unreadable (guard pages and the like): the rest of this mapping
				}
			}
			searched += int64(read)
			window := buf[:carry+read]
			for i, needle := range needles {
				if !found[i] && len(needle) > 0 && bytes.Contains(window, needle) {
					found[i] = true
				}
			}
			keep := min(longest, len(window))
			copy(buf, window[len(window)-keep:])
			carry = keep
			off += n
			if read < int(n) {
				break
			}
		}
	}
	return found, searched, nil
}
