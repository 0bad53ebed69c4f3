// Progressive enhancement: the pages work without this; with it, the design system's components
// start, and a person page takes in new alerts as they arrive (server-sent events).
import { initAll } from '/static/govuk/govuk-frontend.min.js'

document.body.classList.add('govuk-frontend-supported')
initAll()

const view = document.getElementById('person-view')
if (view && window.EventSource) {
  const status = document.getElementById('live-status')
  const refresh = async () => {
    const response = await fetch(window.location.pathname + '?part=body', { headers: { Accept: 'text/html' } })
    if (!response.ok) return false
    document.getElementById('person-view').outerHTML = await response.text()
    return true
  }
  const events = new EventSource(view.dataset.live)
  // Once the stream is open the page hears every new alert; what arrived between the page being
  // drawn and the stream opening (or while it reconnected) is taken in by reading the page again.
  events.addEventListener('open', refresh)
  events.addEventListener('changed', async () => {
    if (await refresh()) {
      status.textContent = 'Updated at ' + new Date().toLocaleTimeString('en-GB') + ' with new information.'
    }
  })
}
