import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { LocationProvider, Route, Router, useLocation } from "preact-iso";
import { api, ApiError, Me, signOut, token } from "./api";
import { SignIn } from "./pages/signin";
import { Overview } from "./pages/overview";
import { Campaigns } from "./pages/campaigns";
import { CampaignPage } from "./pages/campaign";
import { NewCampaign } from "./pages/campaign-new";
import { FirmwarePage } from "./pages/firmware";
import { FirmwareDetail } from "./pages/firmware-detail";
import { DevicePage, Devices } from "./pages/devices";
import { Audit } from "./pages/audit";
import { Admin } from "./pages/admin";
import { Rollbacks } from "./pages/rollbacks";

function App() {
  const [me, setMe] = useState<Me | null>(null);
  const [checked, setChecked] = useState(false);
  const load = () => {
    if (!token()) {
      setChecked(true);
      return;
    }
    api<Me>("GET", "/me")
      .then(setMe)
      .catch((e) => {
        if (e instanceof ApiError && e.status === 401) signOut();
      })
      .finally(() => setChecked(true));
  };
  useEffect(load, []);
  if (!checked) return <p class="muted">Loading…</p>;
  if (!me) return <SignIn onSignedIn={load} />;
  return (
    <LocationProvider scope="/ui">
      <Shell me={me} onSignOut={() => { signOut(); setMe(null); }}>
        <Router>
          <Route path="/ui" component={() => <Overview />} />
          <Route path="/ui/campaigns" component={() => <Campaigns me={me} />} />
          <Route path="/ui/campaigns/new" component={() => <NewCampaign />} />
          <Route path="/ui/campaigns/:id" component={({ id }: { id: string }) => <CampaignPage id={id} me={me} />} />
          <Route path="/ui/firmware" component={() => <FirmwarePage me={me} />} />
          <Route path="/ui/firmware/:id" component={({ id }: { id: string }) => <FirmwareDetail id={id} />} />
          <Route path="/ui/devices" component={() => <Devices me={me} />} />
          <Route path="/ui/devices/:id" component={({ id }: { id: string }) => <DevicePage id={id} me={me} />} />
          <Route path="/ui/audit" component={() => <Audit />} />
          <Route path="/ui/rollbacks" component={() => <Rollbacks />} />
          <Route path="/ui/admin" component={() => <Admin />} />
          <Route default component={() => <p>Nothing here. <a href="/ui">Back to the overview</a>.</p>} />
        </Router>
      </Shell>
    </LocationProvider>
  );
}

function Shell(props: { me: Me; onSignOut: () => void; children: preact.ComponentChildren }) {
  const { path } = useLocation();
  const link = (href: string, label: string) => (
    <a href={href} aria-current={path === href ? "page" : undefined}>{label}</a>
  );
  return (
    <>
      <header>
        <strong>ota</strong>
        <nav aria-label="Main">
          {link("/ui", "Overview")}
          {link("/ui/campaigns", "Campaigns")}
          {link("/ui/firmware", "Firmware")}
          {link("/ui/devices", "Devices")}
          {link("/ui/rollbacks", "Rollbacks")}
          {props.me.may.includes("audit") && link("/ui/audit", "Audit")}
          {props.me.may.includes("admin") && link("/ui/admin", "Administration")}
        </nav>
        <span class="who" data-testid="who">{props.me.subject} · {props.me.role}</span>
        <button type="button" onClick={props.onSignOut}>Sign out</button>
      </header>
      <main>{props.children}</main>
    </>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
