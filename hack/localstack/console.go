package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
)

// console serialises whole lines from every goroutine and child process, so that a
// receiver line never lands in the middle of a dispatcher log line.
type console struct {
	mu  sync.Mutex
	out io.Writer
}

func (c *console) Line(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = io.WriteString(c.out, s+"\n")
}

// Stackf prints a step of the local stack itself.
func (c *console) Stackf(format string, args ...any) {
	c.Line("[stack] " + fmt.Sprintf(format, args...))
}

// Blockf prints lines without a prefix (hints to copy and paste).
func (c *console) Block(lines ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range lines {
		_, _ = io.WriteString(c.out, l+"\n")
	}
}

// prefixWriter turns a child's output into prefixed console lines, and copies it
// unprefixed to a log file when one is given.
type prefixWriter struct {
	con    *console
	prefix string
	file   io.Writer // may be nil
	quiet  bool      // only the file
	mu     sync.Mutex
	buf    bytes.Buffer
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.file != nil {
		_, _ = w.file.Write(p)
	}
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			// An incomplete line waits for the rest.
			w.buf.Reset()
			w.buf.WriteString(line)
			break
		}
		if !w.quiet {
			w.con.Line(w.prefix + strings.TrimRight(line, "\r\n"))
		}
	}
	return len(p), nil
}
