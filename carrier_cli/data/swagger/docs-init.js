// Carrier's Swagger UI set-up: the schema of this server, and requests sent with the key
// typed under "Authorize". Kept out of docs.html so the page needs no inline script.
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    displayRequestDuration: true,
    layout: "BaseLayout",
    validatorUrl: null, // the default badge asks validator.swagger.io about the schema
    presets: [SwaggerUIBundle.presets.apis],
  });
});
