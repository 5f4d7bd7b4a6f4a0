package console

import (
	"fmt"
	"github.com/herald-dev/herald/pkg/wire"
	"strconv"
	"strings"
	"time"
)

// chartMinutes is the window of the charts: the last hour, a bar a minute.
const chartMinutes = 60

// The chart is drawn on the server as inline SVG: no chart library, no script. Failed
// attempts are hatched as well as coloured and latency is a dashed line, so it reads in
// black and white; a table holds the same figures for screen readers and for copying.
const (
	chartW, chartH = 600, 150
	plotTop        = 10
	plotBottom     = 125
)

type chartView struct {
	ID, Title string
	W, H      int
	Bars      []chartBar
	// Line is the mean latency per minute as SVG polyline points.
	Line              string
	MaxCount          int
	MaxMs             float64
	Delivered, Failed int
	MeanMs            float64
	// Alt says in words what the chart shows.
	Alt       string
	Rows      []wire.SummaryBucket
	Truncated bool
	Ticks     []chartTick
	PlotTop   int
	PlotBot   int
}

type chartBar struct {
	X, W                   float64
	DeliveredY, DeliveredH float64
	FailedY, FailedH       float64
	Label                  string
}

type chartTick struct {
	X      float64
	Text   string
	Anchor string
}

func chartOf(s *wire.AttemptSummary, title, id string) *chartView {
	c := &chartView{ID: id, Title: title, W: chartW, H: chartH, Truncated: s.Truncated, PlotTop: plotTop, PlotBot: plotBottom}
	n := len(s.Buckets)
	if n == 0 {
		c.Alt = "No attempts."
		return c
	}
	var sumMs float64
	for _, b := range s.Buckets {
		c.MaxCount = max(c.MaxCount, b.Delivered+b.Failed)
		c.MaxMs = max(c.MaxMs, b.MeanMillis)
		c.Delivered += b.Delivered
		c.Failed += b.Failed
		sumMs += b.MeanMillis * float64(b.Delivered+b.Failed)
		if b.Delivered+b.Failed > 0 {
			c.Rows = append(c.Rows, b)
		}
	}
	if total := c.Delivered + c.Failed; total > 0 {
		c.MeanMs = sumMs / float64(total)
	}
	step := float64(chartW) / float64(n)
	height := float64(plotBottom - plotTop)
	scale := func(v int) float64 {
		if c.MaxCount == 0 {
			return 0
		}
		return float64(v) / float64(c.MaxCount) * height
	}
	var pts []string
	for i, b := range s.Buckets {
		x := float64(i) * step
		dh, fh := scale(b.Delivered), scale(b.Failed)
		c.Bars = append(c.Bars, chartBar{
			X: x + step*0.1, W: step * 0.8,
			DeliveredY: plotBottom - dh, DeliveredH: dh,
			FailedY: plotBottom - dh - fh, FailedH: fh,
			Label: fmt.Sprintf("%s: %d delivered, %d failed, mean %.1f ms", b.Start.UTC().Format("15:04"), b.Delivered, b.Failed, b.MeanMillis),
		})
		if b.Delivered+b.Failed > 0 && c.MaxMs > 0 {
			y := plotBottom - b.MeanMillis/c.MaxMs*height
			pts = append(pts, strconv.FormatFloat(x+step/2, 'f', 1, 64)+","+strconv.FormatFloat(y, 'f', 1, 64))
		}
	}
	c.Line = strings.Join(pts, " ")
	c.Ticks = []chartTick{
		{X: 0, Text: s.Buckets[0].Start.UTC().Format("15:04"), Anchor: "start"},
		{X: float64(n/2)*step + step/2, Text: s.Buckets[n/2].Start.UTC().Format("15:04"), Anchor: "middle"},
		{X: chartW, Text: s.Buckets[n-1].Start.UTC().Format("15:04"), Anchor: "end"},
	}
	c.Alt = fmt.Sprintf("%s since %s UTC: %d delivered and %d failed attempts; mean latency %.1f ms, the slowest minute's mean %.1f ms.",
		c.Title, s.Since.UTC().Format(time.TimeOnly[:5]), c.Delivered, c.Failed, c.MeanMs, c.MaxMs)
	return c
}
