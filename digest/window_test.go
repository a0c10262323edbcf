package digest

import (
	"testing"
	"time"
)

// windowWeekly is the default digest schedule: Mondays at 08:00 UTC.
const windowWeekly = "CRON_TZ=UTC 0 8 * * MON"

func windowTime(t testing.TB, s string) time.Time {
	t.Helper()
	d, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestWindowPeriod(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name, spec, at string
		want           time.Duration
	}{
		{"NoSchedule", "", "2026-12-07T08:00:00Z", 7 * day},
		{"WeeklyAtTheRun", windowWeekly, "2026-12-07T08:00:00Z", 7 * day},
		{"WeeklyMidweek", windowWeekly, "2026-12-09T15:00:00Z", 7 * day},
		{"TwiceWeeklyMonday", "CRON_TZ=UTC 0 8 * * MON,THU", "2026-12-07T08:00:00Z", 4 * day},
		{"TwiceWeeklyThursday", "CRON_TZ=UTC 0 8 * * MON,THU", "2026-12-10T08:05:00Z", 3 * day},
		{"Daily", "@daily", "2026-12-07T00:00:00Z", day},
		{"Every", "@every 36h", "2026-12-07T08:00:00Z", 36 * time.Hour},
		{"AcrossDSTEnd", "CRON_TZ=Europe/London 0 8 * * MON", "2026-10-26T08:00:00Z", 7*day + time.Hour},
		{"Monthly", "CRON_TZ=UTC 0 8 1 * *", "2026-12-01T08:00:00Z", 30 * day},
		{"NeverFires", "0 8 30 2 *", "2026-12-07T08:00:00Z", 7 * day},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore(nil, nil)
			if tt.spec != "" {
				if err := s.SetSchedule(tt.spec); err != nil {
					t.Fatal(err)
				}
			}
			if got := s.period(windowTime(t, tt.at)); got != tt.want {
				t.Errorf("period = %v, want %v", got, tt.want)
			}
		})
	}
}
