package web

import (
	"fmt"
	"math"
	"strconv"
)

// chartView is the weekly chart as admin_readers.html draws it in SVG. Every coordinate is
// computed here, so the template only places elements, with presentation attributes: the pages'
// policy allows no inline style, and the chart needs no script.
type chartView struct {
	Width, Height int
	Left, Right   float64 // the plot area, in the viewBox's units
	Top, Bottom   float64
	Series        []chartSeries
	Bars          []chartBar
	Ticks         []chartTick
	Labels        []chartLabel // the weeks, under the plot
	Rows          []chartRow   // the same figures as a table
	Empty         bool         // nothing happened in any week
}

type chartSeries struct {
	Name, Color string
	Total       int
	KeyX, TextX float64
}

type chartBar struct {
	X, Y, W, H float64
	Fill       string
	Title      string
}

type chartTick struct {
	Y, TextY float64
	Label    string
}

type chartLabel struct {
	X    float64
	Text string
}

type chartRow struct {
	Week    string
	Current bool
	Values  []int
}

// chartSeriesNames are the four figures of a week, in the order of their bars; the colours are
// from the Okabe-Ito palette (told apart with the common colour-vision deficiencies) and keep a
// contrast of at least 3:1 on both the light and the dark background.
var chartSeriesNames = []struct{ Name, Color, One, Many string }{
	{"Confirmations", "#009e73", "confirmation", "confirmations"},
	{"Unsubscribes", "#0072b2", "unsubscribe", "unsubscribes"},
	{"Bounces", "#d55e00", "bounce", "bounces"},
	{"Complaints", "#cc79a7", "complaint", "complaints"},
}

// weeklyChart lays out a grouped bar chart of weeks (oldest first, the current one last).
func weeklyChart(weeks []WeekFigures) chartView {
	c := chartView{Width: 760, Height: 292, Left: 48, Right: 752, Top: 34, Bottom: 250}
	top := 0
	for _, w := range weeks {
		top = max(top, w.Confirmed, w.Unsubscribed, w.Bounced, w.Complained)
	}
	c.Empty = top == 0
	step := niceStep(top)
	top = 4 * step
	plotH := c.Bottom - c.Top
	for i := 0; i <= 4; i++ {
		y := round1(c.Bottom - float64(i*step)/float64(top)*plotH)
		c.Ticks = append(c.Ticks, chartTick{Y: y, TextY: y + 4, Label: strconv.Itoa(i * step)})
	}
	for k, s := range chartSeriesNames {
		x := c.Left + float64(k)*176
		c.Series = append(c.Series, chartSeries{Name: s.Name, Color: s.Color, KeyX: x, TextX: x + 17})
	}
	if len(weeks) == 0 {
		return c
	}
	group := (c.Right - c.Left) / float64(len(weeks))
	bar := group * 0.8 / float64(len(chartSeriesNames))
	for i, w := range weeks {
		values := []int{w.Confirmed, w.Unsubscribed, w.Bounced, w.Complained}
		x0 := c.Left + float64(i)*group
		day := w.Start.UTC().Format("2 Jan 2006")
		c.Labels = append(c.Labels, chartLabel{X: round1(x0 + group/2), Text: w.Start.UTC().Format("2 Jan")})
		c.Rows = append(c.Rows, chartRow{Week: day, Current: i == len(weeks)-1, Values: values})
		for k, v := range values {
			c.Series[k].Total += v
			if v == 0 {
				continue
			}
			h := math.Max(1, float64(v)/float64(top)*plotH) // the smallest figure stays visible
			s := chartSeriesNames[k]
			noun := s.Many
			if v == 1 {
				noun = s.One
			}
			c.Bars = append(c.Bars, chartBar{X: round1(x0 + group*0.1 + float64(k)*bar), Y: round1(c.Bottom - h), W: round1(bar), H: round1(h),
				Fill: s.Color, Title: fmt.Sprintf("Week of %s: %d %s", day, v, noun)})
		}
	}
	return c
}

// niceStep is the step of the value axis: four steps of 1, 2 or 5 times a power of ten that
// reach top.
func niceStep(top int) int {
	need := max(1, (top+3)/4)
	for mag := 1; ; mag *= 10 {
		for _, m := range []int{1, 2, 5} {
			if m*mag >= need {
				return m * mag
			}
		}
	}
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
