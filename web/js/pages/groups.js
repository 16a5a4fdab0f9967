// Resource groups: list and create.
import { API_VERSIONS, arm } from "../api.js";
import { busy, field, h, input, section, table } from "../ui.js";

export async function listGroups() {
  return (await arm("GET", "~/resourceGroups", undefined, API_VERSIONS.groups)).value ?? [];
}

export async function groupsPage() {
  const groups = await listGroups();
  const name = input({ name: "group-name", required: true, maxlength: 90 });
  const submit = h("button", { type: "submit" }, "Create resource group");
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const done = await busy(
          submit,
          () => arm("PUT", `~/resourceGroups/${encodeURIComponent(name.value.trim())}`, { location: "local" }, API_VERSIONS.groups),
          name,
        );
        if (done) dispatchEvent(new Event("kf:refresh"));
      },
    },
    field("Resource group name", name, "1-90 letters, digits, _-.() ; not ending in a period."),
    submit,
  );
  return [
    h("h1", {}, "Resource groups"),
    section("Create a resource group", form),
    section("Resource groups", table(["Name", "Location"], groups.map((g) => [g.name, g.location]))),
  ];
}
