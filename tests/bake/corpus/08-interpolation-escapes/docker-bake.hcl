variable "NAME" { default = "world" }
target "default" {
  args = {
    LITERAL = "$${NAME} stays as written"
    MIXED   = "hello ${NAME}, not $${NAME}"
    MATH    = "${1 + 2 * 3} and ${(1 + 2) * 3}"
    QUOTE   = "say \"${upper(NAME)}\""
  }
  dockerfile-inline = <<EOT
FROM busybox
RUN echo ${NAME} $${NAME}
EOT
}
