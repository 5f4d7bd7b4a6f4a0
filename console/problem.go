package console

import "strings"

// problem is an error as a page shows it: its sentences, and the commands it advises
// (the lines the CLI indents by two spaces: kubectl, export, herald), each a block of
// its own to copy. The errors come from the CLI's clients, so the page advises what
// the CLI would.
type problem struct {
	Parts []problemPart
}

type problemPart struct {
	Text    string
	Command bool
}

func problemOf(err error) *problem {
	if err == nil {
		return nil
	}
	return problemText(err.Error())
}

func problemText(s string) *problem {
	p := &problem{}
	var prose []string
	flush := func() {
		if len(prose) > 0 {
			p.Parts = append(p.Parts, problemPart{Text: strings.Join(prose, "\n")})
			prose = nil
		}
	}
	for _, l := range strings.Split(s, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(l, "  ") && (strings.HasPrefix(t, "kubectl ") || strings.HasPrefix(t, "export ") || strings.HasPrefix(t, "herald ")) {
			flush()
			// Consecutive commands make one block: they are pasted together.
			if n := len(p.Parts); n > 0 && p.Parts[n-1].Command {
				p.Parts[n-1].Text += "\n" + t
			} else {
				p.Parts = append(p.Parts, problemPart{Text: t, Command: true})
			}
			continue
		}
		prose = append(prose, l)
	}
	flush()
	return p
}
