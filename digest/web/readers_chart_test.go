package web

import (
	"testing"
	"time"
)

func TestNiceStep(t *testing.T) {
	for top, want := range map[int]int{0: 1, 1: 1, 4: 1, 5: 2, 8: 2, 9: 5, 20: 5, 21: 10, 40: 10, 41: 20, 399: 100, 401: 200, 1999: 500, 2001: 1000} {
		if got := niceStep(top); got != want {
			t.Errorf("niceStep(%d) = %d, want %d", top, got, want)
		}
		if got := niceStep(top); 4*got < top {
			t.Errorf("niceStep(%d): four steps of %d fall short", top, got)
		}
	}
}

// TestWeeklyChart: one bar per figure that is not zero, in its series' place within its week,
// its height in proportion on an axis of four round steps, each with a title a person can read.
func TestWeeklyChart(t *testing.T) {
	monday := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	weeks := []WeekFigures{
		{Start: monday.AddDate(0, 0, -14), Confirmed: 7},
		{Start: monday.AddDate(0, 0, -7)},
		{Start: monday, Confirmed: 14, Unsubscribed: 1, Bounced: 0, Complained: 2},
	}
	c := weeklyChart(weeks)
	if c.Empty {
		t.Error("a chart with figures is empty")
	}
	if len(c.Bars) != 4 {
		t.Fatalf("%d bars, want 4: %+v", len(c.Bars), c.Bars)
	}
	if len(c.Ticks) != 5 || c.Ticks[4].Label != "20" || c.Ticks[0].Y != c.Bottom || c.Ticks[4].Y != c.Top {
		t.Errorf("ticks %+v, want 0 to 20 in steps of 5 from the bottom to the top", c.Ticks)
	}
	first, big, one := c.Bars[0], c.Bars[1], c.Bars[2]
	if first.H*2 != big.H || big.Y+big.H != c.Bottom {
		t.Errorf("7 and 14 are drawn %v and %v high, from %v to %v", first.H, big.H, big.Y, big.Y+big.H)
	}
	if first.Title != "Week of 16 Nov 2026: 7 confirmations" || one.Title != "Week of 30 Nov 2026: 1 unsubscribe" {
		t.Errorf("titles %q, %q", first.Title, one.Title)
	}
	if one.Fill != chartSeriesNames[1].Color || !(one.X > big.X) || c.Bars[3].Fill != chartSeriesNames[3].Color {
		t.Errorf("bars out of their series' order or colours: %+v", c.Bars)
	}
	if first.X >= c.Labels[1].X || big.X <= c.Labels[1].X {
		t.Error("bars outside their week")
	}
	if got := []int{c.Series[0].Total, c.Series[1].Total, c.Series[2].Total, c.Series[3].Total}; got[0] != 21 || got[1] != 1 || got[2] != 0 || got[3] != 2 {
		t.Errorf("series totals %v", got)
	}
	if len(c.Rows) != 3 || !c.Rows[2].Current || c.Rows[0].Current || c.Rows[2].Week != "30 Nov 2026" || c.Labels[2].Text != "30 Nov" {
		t.Errorf("rows %+v, labels %+v", c.Rows, c.Labels)
	}
	for _, b := range c.Bars {
		if b.X < c.Left || b.X+b.W > c.Right || b.Y < c.Top {
			t.Errorf("bar %+v outside the plot", b)
		}
	}

	empty := weeklyChart([]WeekFigures{{Start: monday}})
	if !empty.Empty || len(empty.Bars) != 0 || len(empty.Ticks) != 5 {
		t.Errorf("an empty chart: %+v", empty)
	}
}
