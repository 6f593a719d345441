/* dashboard_blob.S - daemon/dashboard.html embedded in the binary, so GET / needs no file on disk. */
        .section .rodata
        .global cp_dashboard_html
        .type cp_dashboard_html, @object
        .balign 16
cp_dashboard_html:
        .incbin "daemon/dashboard.html"
        .global cp_dashboard_html_end
        .type cp_dashboard_html_end, @object
cp_dashboard_html_end:
        .byte 0
        .section .note.GNU-stack,"",@progbits
