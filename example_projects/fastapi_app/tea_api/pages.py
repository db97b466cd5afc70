"""The shop's one HTML page: the catalogue, a login form and order buttons (plain fetch calls)."""

HOME = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Tea shop</title></head>
<body>
  <h1>Tea shop</h1>
  <form id="login">
    <input name="username" value="alice"> <input name="password" type="password" value="green-tea">
    <button>Log in</button>
  </form>
  <ul>
    <li>Sencha green tea, 7.50 EUR <button data-sku="TEA-01">Order</button></li>
    <li>Stoneware mug, 12.00 EUR <button data-sku="MUG-02">Order</button></li>
    <li>Cast-iron teapot, 39.90 EUR <button data-sku="POT-03">Order</button></li>
  </ul>
  <pre id="out"></pre>
  <script>
    const out = document.getElementById("out");
    async function post(path, body) {
      const response = await fetch(path, {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify(body),
      });
      out.textContent = response.status + " " + await response.text();
    }
    document.getElementById("login").addEventListener("submit", (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      post("/login", {username: form.get("username"), password: form.get("password")});
    });
    for (const button of document.querySelectorAll("button[data-sku]")) {
      button.addEventListener("click", () => post("/orders", {sku: button.dataset.sku}));
    }
  </script>
</body>
</html>
"""
