package smtpout

import (
	"errors"
	"fmt"
	"net/textproto"
	"testing"
	"time"
)

func TestPolicyDelay(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		n    int
		want time.Duration
	}{
		{"ConfirmFirst", ConfirmRetry, 1, 5 * time.Second},
		{"ConfirmSecond", ConfirmRetry, 2, 10 * time.Second},
		{"ConfirmThird", ConfirmRetry, 3, 20 * time.Second},
		{"ConfirmSixth", ConfirmRetry, 6, 160 * time.Second},
		{"ConfirmCapped", ConfirmRetry, 7, 5 * time.Minute},
		{"ConfirmFarOut", ConfirmRetry, 100, 5 * time.Minute},
		{"DigestFirst", DigestRetry, 1, time.Minute},
		{"DigestFourth", DigestRetry, 4, 8 * time.Minute},
		{"DigestCapped", DigestRetry, 9, time.Hour},
		{"ReconnectFirst", Reconnect, 1, 2 * time.Second},
		{"ReconnectCapped", Reconnect, 10, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.nominal(tc.n); got != tc.want {
				t.Fatalf("nominal(%d) = %v, want %v", tc.n, got, tc.want)
			}
			for range 100 {
				if d := tc.p.Delay(tc.n); d < tc.want/2 || d >= tc.want*3/2 {
					t.Fatalf("Delay(%d) = %v, outside 50-150%% of %v", tc.n, d, tc.want)
				}
			}
		})
	}
}

func TestPolicyFinalAndFill(t *testing.T) {
	if DigestRetry.Final(4) || !DigestRetry.Final(5) || !DigestRetry.Final(6) {
		t.Error("DigestRetry: the 5th try's failure must be final, not the 4th's")
	}
	if ConfirmRetry.Final(1000) {
		t.Error("ConfirmRetry gave up")
	}
	p := Policy{Attempts: 3}.Fill(DigestRetry)
	if p != (Policy{First: time.Minute, Max: time.Hour, Attempts: 3}) {
		t.Errorf("Fill = %+v", p)
	}
	if p := (Policy{First: time.Hour}).Fill(Reconnect); p.Max != time.Hour {
		t.Errorf("Max below First: %+v", p)
	}
}

func TestClassify(t *testing.T) {
	reply := func(code int) error { return &textproto.Error{Code: code, Msg: "x"} }
	for _, tc := range []struct {
		name string
		err  error
		want Verdict
	}{
		{"Timeout", fmt.Errorf("send: %w", newError(StageMessage, errors.New("i/o timeout"))), Retry},
		{"Greylisted", newError(StageRcpt, reply(451)), Retry},
		{"ServiceClosing", newError(StageMail, reply(421)), Retry},
		{"NoSuchUser", newError(StageRcpt, reply(550)), Refused},
		{"MessageRefused", newError(StageMessage, reply(554)), Refused},
		{"NeedsSMTPUTF8", &Error{Stage: StageRcpt, Code: 553, Local: true, Err: errors.New("5.6.7")}, Undeliverable},
		{"SenderRefused", newError(StageMail, reply(553)), Setup},
		{"LoginRefused", newError(StageConnect, reply(535)), Setup},
		{"NotSMTP", errors.New("compose failed"), Retry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}
