// Progressive enhancement: the pages work without this; with it, the design system's components
// start, and a person page takes in new alerts as they arrive (server-sent events).
import { initAll } from '/static/govuk/govuk-frontend.min.js'

document.body.classList.add('govuk-frontend-supported')
initAll()

const view = document.getElementById('person-view')
if (view && window.EventSource) {
  const status = document.getElementById('live-status')
  const events = new EventSource(view.dataset.live)
  events.addEventListener('changed', async () => {
    const response = await fetch(window.location.pathname + '?part=body', { headers: { Accept: 'text/html' } })
    if (!response.ok) return
    document.getElementById('person-view').outerHTML = await response.text()
    status.textContent = 'Updated at ' + new Date().toLocaleTimeString('en-GB') + ' with new information.'
  })
}
