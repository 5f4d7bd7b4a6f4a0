package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
)

// Hand-written SVG, no dependencies.

const (
	svgW, svgH                     = 860, 420
	padL, padR, padT, padB float64 = 70, 170, 50, 60
)

type svg struct{ bytes.Buffer }

func newSVG(title string) *svg {
	s := &svg{}
	fmt.Fprintf(s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", svgW, svgH, svgW, svgH)
	fmt.Fprintf(s, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(s, `<text x="%d" y="24" text-anchor="middle" font-size="15" font-weight="bold">%s</text>`+"\n", svgW/2, html.EscapeString(title))
	return s
}

func (s *svg) line(x1, y1, x2, y2 float64, stroke string, width float64, dash string) {
	d := ""
	if dash != "" {
		d = fmt.Sprintf(` stroke-dasharray="%s"`, dash)
	}
	fmt.Fprintf(s, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"%s/>`+"\n", x1, y1, x2, y2, stroke, width, d)
}

func (s *svg) text(x, y float64, anchor, txt string, extra string) {
	fmt.Fprintf(s, `<text x="%.1f" y="%.1f" text-anchor="%s"%s>%s</text>`+"\n", x, y, anchor, extra, html.EscapeString(txt))
}

func (s *svg) done() []byte {
	s.WriteString("</svg>\n")
	return s.Bytes()
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// axes draws the frame and the y grid, returning the plot's scale functions.
func (s *svg) axes(xMax, yMax float64, xLabel, yLabel string, xTicks bool) (fx, fy func(float64) float64) {
	x0, x1, y0, y1 := padL, float64(svgW)-padR, float64(svgH)-padB, padT
	fx = func(v float64) float64 { return x0 + (x1-x0)*v/xMax }
	fy = func(v float64) float64 { return y0 - (y0-y1)*v/yMax }
	for i := 0; i <= 5; i++ {
		v := yMax * float64(i) / 5
		s.line(x0, fy(v), x1, fy(v), "#e5e5e5", 1, "")
		s.text(x0-6, fy(v)+4, "end", trimFloat(v), "")
	}
	if xTicks {
		step := niceMax(xMax / 10)
		for v := 0.0; v <= xMax+1e-9; v += step {
			s.line(fx(v), y0, fx(v), y0+4, "#333", 1, "")
			s.text(fx(v), y0+18, "middle", trimFloat(v), "")
		}
	}
	s.line(x0, y0, x1, y0, "#333", 1, "")
	s.line(x0, y0, x0, y1, "#333", 1, "")
	s.text((x0+x1)/2, float64(svgH)-18, "middle", xLabel, "")
	fmt.Fprintf(s, `<text x="18" y="%.1f" text-anchor="middle" transform="rotate(-90 18 %.1f)">%s</text>`+"\n", (y0+y1)/2, (y0+y1)/2, html.EscapeString(yLabel))
	return fx, fy
}

func trimFloat(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func (s *svg) legend(i int, color, label string, dash string) {
	x, y := float64(svgW)-padR+16, padT+14+float64(i)*20
	s.line(x, y-4, x+22, y-4, color, 3, dash)
	s.text(x+28, y, "start", label, "")
}

// latencyChart: e's ingest-to-receipt latency per second of the run (by send time).
func latencyChart(e *scenarioResult, r *results) []byte {
	s := newSVG(fmt.Sprintf("e. steady latency at %.0f events/s — ingest-to-receipt per second", e.TargetRate))
	xMax := 1.0
	yMax := 50.0
	for _, p := range e.Series {
		xMax = max(xMax, float64(p.Second+1))
		yMax = max(yMax, p.P99)
	}
	yMax = niceMax(yMax * 1.1)
	fx, fy := s.axes(xMax, yMax, "seconds since start (by send time)", "latency (ms)", true)
	series := []struct {
		name, color string
		v           func(seriesPoint) float64
	}{
		{"p50", "#2b8a3e", func(p seriesPoint) float64 { return p.P50 }},
		{"p95", "#e67700", func(p seriesPoint) float64 { return p.P95 }},
		{"p99", "#c92a2a", func(p seriesPoint) float64 { return p.P99 }},
	}
	for i, sr := range series {
		var pts bytes.Buffer
		for _, p := range e.Series {
			fmt.Fprintf(&pts, "%.1f,%.1f ", fx(float64(p.Second)+0.5), fy(min(sr.v(p), yMax)))
		}
		fmt.Fprintf(s, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", sr.color, pts.String())
		s.legend(i, sr.color, sr.name, "")
	}
	s.line(fx(0), fy(50), fx(xMax), fy(50), "#555", 1.5, "6 4")
	s.legend(3, "#555", "target p99 50 ms", "6 4")
	s.text(float64(svgW)-padR+16, padT+110, "start", fmt.Sprintf("whole run: p50 %.1f ms", e.Latency.P50), "")
	s.text(float64(svgW)-padR+16, padT+128, "start", fmt.Sprintf("p95 %.1f, p99 %.1f ms", e.Latency.P95, e.Latency.P99), "")
	s.text(float64(svgW)-padR+16, padT+146, "start", fmt.Sprintf("max %.1f ms", e.Latency.Max), "")
	s.text(float64(svgW)-padR+16, padT+164, "start", fmt.Sprintf("%d events", e.Deliveries), "")
	s.text(float64(svgW)-padR+16, padT+190, "start", r.Date[:10], ` fill="#777"`)
	return s.done()
}

// isolationChart: c's deliveries/s per endpoint next to b's.
func isolationChart(c, b *scenarioResult) []byte {
	s := newSVG("c. isolation — deliveries/s per endpoint, 10 healthy + 1 that never answers")
	n := len(c.PerEndpoint)
	bRate := 0.0
	if b != nil && len(b.PerEndpoint) > 0 {
		bRate = b.DeliveriesPerSecond / float64(len(b.PerEndpoint))
	}
	yMax := bRate
	for _, e := range c.PerEndpoint {
		yMax = max(yMax, e.PerSecond)
	}
	yMax = niceMax(yMax * 1.1)
	fx, fy := s.axes(float64(n), yMax, "endpoint", "deliveries/s", false)
	slot := fx(1) - fx(0)
	for i, e := range c.PerEndpoint {
		x := fx(float64(i))
		if b != nil && i < len(b.PerEndpoint) {
			be := b.PerEndpoint[i]
			fmt.Fprintf(s, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#adb5bd"/>`+"\n",
				x+slot*0.12, fy(be.PerSecond), slot*0.36, fy(0)-fy(be.PerSecond))
		}
		color := "#1971c2"
		if !e.Healthy {
			color = "#c92a2a"
		}
		h := fy(0) - fy(e.PerSecond)
		fmt.Fprintf(s, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n",
			x+slot*0.52, fy(e.PerSecond), slot*0.36, max(h, 1), color)
		label := e.Name
		if !e.Healthy {
			label = "dead"
		}
		s.text(x+slot/2, fy(0)+18, "middle", label, "")
		if !e.Healthy {
			s.text(x+slot/2, fy(0)-8, "middle", fmt.Sprintf("%d req", e.Requests), ` font-size="10"`)
		}
	}
	if bRate > 0 {
		s.line(fx(0), fy(0.9*bRate), fx(float64(n)), fy(0.9*bRate), "#555", 1.5, "6 4")
	}
	s.legend(0, "#adb5bd", "b (no dead endpoint)", "")
	s.legend(1, "#1971c2", "c, healthy", "")
	s.legend(2, "#c92a2a", "c, never answers", "")
	s.legend(3, "#555", "90 % of b", "6 4")
	if c.HealthyVsB > 0 {
		s.text(float64(svgW)-padR+16, padT+110, "start", fmt.Sprintf("healthy: %.0f %% of b", c.HealthyVsB), "")
		s.text(float64(svgW)-padR+16, padT+128, "start", fmt.Sprintf("worst: %.0f %% of b", c.WorstHealthyVsB), "")
	}
	return s.done()
}
