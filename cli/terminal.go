package cli

import (
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

// Much of what the commands print was not written by Herald: a receiver's response body
// and headers in the attempt log, the error a receiver's connection ended with, event
// ids and types a producer chose, status messages quoting them, errors from the
// dispatcher and the API server. A terminal acts on the control characters in it: an
// ESC [ 2 J in a response body clears the screen of whoever lists the attempts, a \r
// rewrites the line before it, an OSC sequence sets the window title or, on some
// terminals, a clipboard. So every command writes through printableWriter, set up once
// for the whole command tree by printableOutput, whatever it prints and in every format:
//
//   - table and text: control characters appear as \u escapes, visible and inert;
//   - json: encoding/json already escapes C0 characters; DEL and C1 characters, which
//     it leaves as they are, become \u escapes, which is the same JSON value;
//   - yaml: the encoder double-quotes and escapes C0 characters and refuses DEL and C1,
//     so nothing reaches the writer to change.
//
// Newline and tab are the commands' own layout and pass unchanged; where a value that
// is not Herald's could break a table with them, the command folds it onto one line
// (shorten).

// printableOutput makes the executing command, and the root that prints its error,
// write through printableWriter.
func printableOutput(cmd *cobra.Command, _ []string) {
	for _, c := range []*cobra.Command{cmd, cmd.Root()} {
		c.SetOut(printable(c.OutOrStdout()))
		c.SetErr(printable(c.ErrOrStderr()))
	}
}

func printable(w io.Writer) io.Writer {
	if _, ok := w.(*printableWriter); ok {
		return w
	}
	return &printableWriter{w: w}
}

// printableWriter writes what it is given with every control character except newline
// and tab (C0, DEL, C1) as a \u escape, and every byte that is not UTF-8 as U+FFFD.
type printableWriter struct {
	w io.Writer
	// pending holds the start of a UTF-8 sequence that the previous Write cut.
	pending []byte
}

func (p *printableWriter) Write(b []byte) (int, error) {
	in := b
	if len(p.pending) > 0 {
		in = append(p.pending, b...)
		p.pending = nil
	}
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); {
		c := in[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
				out = fmt.Appendf(out, `\u%04x`, c)
			} else {
				out = append(out, c)
			}
			i++
			continue
		}
		if !utf8.FullRune(in[i:]) {
			// The rest of the sequence comes with the next Write.
			p.pending = append([]byte(nil), in[i:]...)
			break
		}
		r, size := utf8.DecodeRune(in[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			out = utf8.AppendRune(out, utf8.RuneError)
		case r >= 0x80 && r <= 0x9f:
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, in[i:i+size]...)
		}
		i += size
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}
