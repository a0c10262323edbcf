package send

import (
	netmail "net/mail"
	"testing"
	"time"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/subscribers"
	"newsletter/templates"
)

// wireEditions are an edition in each language as an editor might write one: an investigation
// announced with a picture, a quote, a list and links to the publication's site.
var wireEditions = []digest.Edition{
	{
		ID: 301, Lang: "en", Newsletter: "Investigations", Subject: "Who owns the Baltic's shadow fleet",
		Preheader: "A year-long investigation with our partners in four countries",
		Markdown: `For a year our reporters followed **forty-one tankers** through six flag registries. Today we
publish what they found: a fleet that carries oil under *flags of convenience*, owned through
companies in [Dubai](https://gazette.example/en/2026/11/25/fleet#dubai) and
[Hong Kong](https://gazette.example/en/2026/11/25/fleet#hong-kong).

![A tanker at anchor in the Gulf of Finland](https://gazette.example/images/2026/11/tanker.jpg)

## What we found

- 41 tankers, 23 of them older than twenty years
- 6 flag registries, three of them in countries with no coast on the Baltic
- one insurer, registered in a single office in a business centre

> Every one of these ships is an oil spill waiting to happen, and nobody knows who would pay
> for it.

An old tanker in the Baltic is a danger to every coast on it. Read the
[whole investigation](https://gazette.example/en/2026/11/25/fleet) on our site, with the
documents we obtained and the answers of the companies we asked.

### How we did it

We matched ship-tracking data with company records and insurance filings over twelve months.
Do you know more? Reply to this email, or write to <tips@gazette.example>.
`,
	},
	{
		ID: 302, Lang: "ru", Newsletter: "Расследования", Subject: "Кто владеет теневым флотом на Балтике",
		Preheader: "Годовое расследование вместе с коллегами из четырёх стран",
		Markdown: `Год наши журналисты следили за **сорока одним танкером** в шести реестрах. Сегодня мы
публикуем то, что нашли: флот, который возит нефть под *удобными флагами* и принадлежит
компаниям в [Дубае](https://gazette.example/ru/2026/11/25/flot#dubai) и
[Гонконге](https://gazette.example/ru/2026/11/25/flot#hong-kong).

![Танкер на якоре в Финском заливе](https://gazette.example/images/2026/11/tanker.jpg)

## Что мы нашли

- 41 танкер, 23 из них старше двадцати лет;
- 6 реестров, три из них в странах без выхода к Балтийскому морю;
- один страховщик, зарегистрированный в офисе бизнес-центра.

> Каждое из этих судов — разлив нефти, который ждёт своего часа, и никто не знает, кто
> за него заплатит.

Старый танкер на Балтике опасен для всех её берегов. Читайте
[расследование целиком](https://gazette.example/ru/2026/11/25/flot) на нашем сайте: с
документами, которые мы получили, и ответами компаний.

### Как мы работали

Мы сопоставили данные о движении судов с реестрами компаний и страховыми документами за
двенадцать месяцев. Знаете больше? Ответьте на это письмо.
`,
	},
}

// editionWireMessages builds each of wireEditions as a reader's message the way the sender builds
// an issue's (render.Marked, buildTemplate, then the reader's values filled in: name, signed
// unsubscribe and manage links, Message-ID, To). Editions are not sent yet, so no engine sends
// them; the bytes are those the engine would hand the relay.
func editionWireMessages(t *testing.T) []wireMessage {
	t.Helper()
	fsys := templates.FS("")
	cat, err := templates.LoadCatalog(fsys)
	if err != nil {
		t.Fatal(err)
	}
	r, err := render.NewRenderer(fsys, cat, render.Options{BaseURL: wireBaseURL, Publication: wirePublication,
		PostalAddress: wirePostal, From: wireFrom})
	if err != nil {
		t.Fatal(err)
	}
	from, err := netmail.ParseAddress(wireFrom)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("wire-test-secret-0123456789")
	signer := subscribers.NewSigner(secret)
	readers := map[string]struct{ uuid, name, email string }{
		"en": {"6f1d0c52-8a4e-4f0e-9a43-1c2b7d9e0a11", "Anna Smith", "anna.smith@example.org"},
		"ru": {"0b7e5d13-2c9f-4a61-8e07-5d4c3b2a1f90", "Анна Петрова", "anna.petrova@example.org"},
	}
	domain := domainOf(from.Address)
	var out []wireMessage
	for _, e := range wireEditions {
		e.Date = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
		rendered, err := r.RenderEdition(e, render.Marked(true))
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := buildTemplate(rendered, messageHeaders{From: from, Subject: rendered.Subject, Date: e.Date,
			ListID: listID(wirePublication, "investigations", domain)})
		if err != nil {
			t.Fatal(err)
		}
		rd := readers[e.Lang]
		if !tmpl.nameFits(rd.name) {
			t.Fatalf("%s: the reader's name does not fit the template", e.Lang)
		}
		v := readerValues{
			Email:     rd.email,
			Name:      rd.name,
			MessageID: messageID(secret, e.ID, rd.uuid, domain),
			Unsub:     signer.IssueUnsubscribeURL(wireBaseURL, rd.uuid, e.ID),
			Manage:    signer.ManageURL(wireBaseURL, rd.uuid),
			To:        formatTo(rd.name, rd.email),
		}
		out = append(out, wireMessage{Name: "edition-" + e.Lang, Data: tmpl.fill(nil, &v)})
	}
	return out
}
