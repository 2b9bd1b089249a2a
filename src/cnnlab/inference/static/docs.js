// Swagger UI for /docs, started from a file rather than an inline script: the lab's content-security policy
// allows no inline script. "Try it out" sends X-Requested-With, as the lab's own page does, so that uploads
// pass the server's check against cross-site form posts.
SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  requestInterceptor: request => { request.headers["X-Requested-With"] = "cnnlab"; return request; },
});
